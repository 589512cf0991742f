"""Darknet's activation functions by name, and the codes the kernels of every backend switch on."""

ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "loggy", "relie", "ramp", "tanh", "plse", "elu",
               "lhtan", "hardtan", "stair", "selu")
(LINEAR, LEAKY, RELU, LOGISTIC, LOGGY, RELIE, RAMP, TANH, PLSE, ELU,
 LHTAN, HARDTAN, STAIR, SELU) = range(len(ACTIVATIONS))
