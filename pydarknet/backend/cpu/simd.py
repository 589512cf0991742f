"""Eight-float vectors for Numba kernels: a type held in one machine register, and the few operations the
register-blocked kernels (direct.py) need, written as LLVM vector instructions.

Why: LLVM vectorises a Numba loop over its innermost index only, so sums that should stay in registers across an
outer loop (a convolution's channels and taps) go through memory on every step. With these, a kernel keeps a block
of outputs in eight registers for the whole sum and writes each output once. Eight lanes are AVX2's width; on an
AVX-512 machine LLVM still emits the same 256-bit code.

The arithmetic is IEEE: `fmuladd` may fuse a multiply-add (as vector_kernel's `contract` does), the epilogue's
subtract, multiply and add round one by one as Darknet's C does (activations.py's _bias_activate, to the bit).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8
_VECTOR = ir.VectorType(ir.FloatType(), LANES)
FLT_MIN = 1.1754943508222875e-38


class Float8(types.Type):
    """Eight float32 values in one vector register."""

    def __init__(self):
        super().__init__(name="float8")


float8 = Float8()


@register_model(Float8)
class _Float8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _pointer(context, builder, array_type, array, index):
    """The address of array[index] (a C-contiguous 1-d float32 array) as a vector pointer."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), ir.PointerType(_VECTOR))


def _splat(builder, value):
    lane = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(lane, ir.Constant(_VECTOR, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@intrinsic
def load(typingctx, array, index):
    """array[index:index + 8] (no alignment needed)."""
    def codegen(context, builder, signature, args):
        value = builder.load(_pointer(context, builder, signature.args[0], *args))
        value.align = 4
        return value
    return float8(array, index), codegen


@intrinsic
def store(typingctx, array, index, vector):
    """array[index:index + 8] = vector."""
    def codegen(context, builder, signature, args):
        builder.store(args[2], _pointer(context, builder, signature.args[0], args[0], args[1])).align = 4
        return context.get_dummy_value()
    return types.none(array, index, vector), codegen


@intrinsic
def splat(typingctx, value):
    """value (a float32) in every lane."""
    def codegen(context, builder, signature, args):
        return _splat(builder, args[0])
    return float8(types.float32), codegen


@intrinsic
def zeros(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)
    return float8(), codegen


@intrinsic
def multiply_add(typingctx, a, b, c):
    """a * b + c, fused where the machine has FMA."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3),
                                                  "llvm.fmuladd.v8f32")
        return builder.call(function, args)
    return float8(float8, float8, float8), codegen


def _fence(builder, v):
    """v, where a fast-math kernel (Numba flags every float instruction of its module) may not fuse or reorder
    the arithmetic around it."""
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]),
                                              "llvm.arithmetic.fence.v8f32")
    return builder.call(function, [v])


@intrinsic
def affine(typingctx, v, mean, scale, bias):
    """(v - mean) * scale + bias, rounded step by step (float32 scalars spread over the lanes)."""
    def codegen(context, builder, signature, args):
        v, mean, scale, bias = args[0], *(_splat(builder, a) for a in args[1:])
        product = _fence(builder, builder.fmul(_fence(builder, builder.fsub(v, mean)), scale))
        return builder.fadd(product, bias)
    return float8(float8, types.float32, types.float32, types.float32), codegen


@intrinsic
def leaky(typingctx, v):
    """v where v > 0, else .1 * v (NaN stays NaN): Darknet's leaky_activate in float32."""
    def codegen(context, builder, signature, args):
        v = args[0]
        positive = builder.fcmp_ordered(">", v, ir.Constant(_VECTOR, [0.0] * LANES))
        return builder.select(positive, v, builder.fmul(v, ir.Constant(_VECTOR, [0.1] * LANES)))
    return float8(float8), codegen


@intrinsic
def zero_denormals(typingctx, v):
    """Denormal values set to zero (|v| < FLT_MIN; NaN stays NaN)."""
    def codegen(context, builder, signature, args):
        v = args[0]
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]), "llvm.fabs.v8f32")
        tiny = builder.fcmp_ordered("<", builder.call(fabs, [v]), ir.Constant(_VECTOR, [FLT_MIN] * LANES))
        return builder.select(tiny, ir.Constant(_VECTOR, [0.0] * LANES), v)
    return float8(float8), codegen


@intrinsic
def double_bits(typingctx, value):
    """The bits of a float64 as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def double_from_bits(typingctx, bits):
    """The float64 whose bits an int64 holds."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def pool_row(typingctx, best, row0, row1):
    """One row's half of the 2x2 stride-2 max pool of 16 values (row0, row1): lane i is best's lane i, then
    row[2i], then row[2i + 1], each taken where greater, as Darknet's loop meets them (a NaN never wins). From
    -FLT_MAX with the upper row, then with the lower row: the window's maximum."""
    def codegen(context, builder, signature, args):
        even = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(0, 2 * LANES, 2)))
        odd = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(1, 2 * LANES, 2)))
        best = args[0]
        for lanes in (even, odd):
            v = builder.shuffle_vector(args[1], args[2], lanes)
            best = builder.select(builder.fcmp_ordered(">", v, best), v, best)
        return best
    return float8(float8, float8, float8), codegen


@intrinsic
def lowest(typingctx):
    """-FLT_MAX in every lane: where a max pool starts."""
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [-3.4028234663852886e38] * LANES)
    return float8(), codegen
