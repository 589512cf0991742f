/* Darknet's side of the fine-tune parity check (issue 23): pjreddie's train_network_datum on batches read from
 * files, one line per step (the loss, each [yolo] layer's cost, each convolutional layer's checksums).
 *
 * Build (against a pjreddie/darknet checkout built with `make OPENMP=1`, i.e. -Ofast, CPU):
 *     gcc -O2 -fopenmp -I$DARKNET/include -I$DARKNET/src tools/finetune_parity/harness.c $DARKNET/libdarknet.a \
 *         -lm -pthread -o harness
 * (tools/finetune_parity/build.sh does this, and builds Darknet first when it is not built.)
 *
 * Usage: harness CFG WEIGHTS IMAGES TRUTH SCHEDULE STEPS OUT.tsv FINAL.weights [DUMP_STEP DUMP_PREFIX]
 *   IMAGES    float32 N x C x H x W (the network's input size), the pixels each batch is made of
 *   TRUTH     float32 N x net->truths (x, y, w, h, class per box; x = 0 ends the list, as Darknet's loader leaves it)
 *   SCHEDULE  int32 STEPS x net->batch: the image index of every slot of every batch
 *   DUMP_STEP at that step (1-based), every layer's output and delta before the update go to
 *             DUMP_PREFIX_out_LL.bin / DUMP_PREFIX_delta_LL.bin, and the updated weights to DUMP_PREFIX.weights
 *
 * HARNESS_MOMENTUM=FILE loads each convolutional layer's momentum (weight/bias/scale updates) after the weights, so
 * that Darknet goes on exactly where a pydarknet run stopped (`parity.py pydarknet -save_state K`).
 * HARNESS_KEEP_SEEN=1 in the environment keeps the weights file's `seen` (a run resumed mid-way: the learning rate
 * past burn-in); otherwise seen starts at 0, as `detector train -clear` and a partial file's header do.
 *
 * The step is train_network_datum's body, written out only so that the dump can sit between backward and update.
 * Nothing is random: no augmentation, no dropout, batch-norm in training mode on the batch's statistics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "darknet.h"

static void *read_all(const char *path, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "harness: cannot open %s\n", path); exit(1); }
    void *data = malloc(bytes);
    if (fread(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "harness: %s is shorter than %zu bytes\n", path, bytes);
        exit(1);
    }
    fclose(f);
    return data;
}

static size_t file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "harness: cannot open %s\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    size_t n = ftell(f);
    fclose(f);
    return n;
}

static double abs_sum(const float *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; ++i) s += fabs((double)x[i]);
    return s;
}

static void write_floats(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "harness: cannot write %s\n", path); exit(1); }
    fwrite(x, sizeof(float), n, f);
    fclose(f);
}

static void dump_layers(network *net, const char *prefix)
{
    char path[4096];
    for (int i = 0; i < net->n; ++i) {
        layer l = net->layers[i];
        snprintf(path, sizeof path, "%s_out_%02d.bin", prefix, i);
        write_floats(path, l.output, (size_t)l.outputs * l.batch);
        if (l.delta) {
            snprintf(path, sizeof path, "%s_delta_%02d.bin", prefix, i);
            write_floats(path, l.delta, (size_t)l.outputs * l.batch);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 9 && argc != 11) {
        fprintf(stderr, "usage: %s CFG WEIGHTS IMAGES TRUTH SCHEDULE STEPS OUT.tsv FINAL.weights "
                        "[DUMP_STEP DUMP_PREFIX]\n", argv[0]);
        return 2;
    }
    /* seen starts at 0 (burn-in from the start), unless HARNESS_KEEP_SEEN is set: a run resumed from a weights file */
    network *net = load_network(argv[1], argv[2], getenv("HARNESS_KEEP_SEEN") ? 0 : 1);
    /* HARNESS_MOMENTUM=FILE: each convolutional layer's weight_updates, bias_updates (and scale_updates with
     * batch-norm) in layer order, float32, as pydarknet's `parity.py pydarknet -save_state K` writes them */
    const char *momentum = getenv("HARNESS_MOMENTUM");
    if (momentum) {
        FILE *f = fopen(momentum, "rb");
        if (!f) { fprintf(stderr, "harness: cannot open %s\n", momentum); return 1; }
        for (int i = 0; i < net->n; ++i) {
            layer l = net->layers[i];
            if (l.type != CONVOLUTIONAL) continue;
            int ok = fread(l.weight_updates, sizeof(float), l.nweights, f) == (size_t)l.nweights
                  && fread(l.bias_updates, sizeof(float), l.n, f) == (size_t)l.n
                  && (!l.batch_normalize || fread(l.scale_updates, sizeof(float), l.n, f) == (size_t)l.n);
            if (!ok) { fprintf(stderr, "harness: %s is too short for layer %d\n", momentum, i); return 1; }
        }
        fclose(f);
    }
    int steps = atoi(argv[6]);
    int dump_step = argc == 11 ? atoi(argv[9]) : -1;
    size_t inputs = net->inputs, truths = net->truths;
    size_t images = file_size(argv[3]) / (inputs * sizeof(float));
    float *pixels = read_all(argv[3], images * inputs * sizeof(float));
    float *truth = read_all(argv[4], images * truths * sizeof(float));
    int *schedule = read_all(argv[5], (size_t)steps * net->batch * sizeof(int));

    FILE *out = fopen(argv[7], "w");
    if (!out) { fprintf(stderr, "harness: cannot write %s\n", argv[7]); return 1; }
    fprintf(out, "step\trate\tloss");
    for (int i = 0; i < net->n; ++i)
        if (net->layers[i].type == YOLO) fprintf(out, "\tcost_%d", i);
    for (int i = 0; i < net->n; ++i)
        if (net->layers[i].type == CONVOLUTIONAL) fprintf(out, "\tw_%d\tbn_%d", i, i);
    fprintf(out, "\n");

    for (int s = 0; s < steps; ++s) {
        for (int b = 0; b < net->batch; ++b) {
            int k = schedule[s * net->batch + b];
            if (k < 0 || (size_t)k >= images) {
                fprintf(stderr, "harness: schedule names image %d of %zu\n", k, images);
                return 1;
            }
            memcpy(net->input + b * inputs, pixels + k * inputs, inputs * sizeof(float));
            memcpy(net->truth + b * truths, truth + k * truths, truths * sizeof(float));
        }
        /* train_network_datum */
        *net->seen += net->batch;
        net->train = 1;
        forward_network(net);
        backward_network(net);
        float cost = *net->cost;
        if (s + 1 == dump_step) dump_layers(net, argv[10]);
        if (((*net->seen) / net->batch) % net->subdivisions == 0) update_network(net);
        if (s + 1 == dump_step) {
            char path[4096];
            snprintf(path, sizeof path, "%s.weights", argv[10]);
            save_weights(net, path);
        }

        /* what train_detector prints: the cost per image (train_network's value) and the rate after the step */
        fprintf(out, "%d\t%.9g\t%.9g", s + 1, get_current_rate(net), cost / net->batch);
        for (int i = 0; i < net->n; ++i)
            if (net->layers[i].type == YOLO) fprintf(out, "\t%.9g", net->layers[i].cost[0]);
        for (int i = 0; i < net->n; ++i) {
            layer l = net->layers[i];
            if (l.type != CONVOLUTIONAL) continue;
            double bn = abs_sum(l.biases, l.n);
            if (l.batch_normalize)
                bn += abs_sum(l.scales, l.n) + abs_sum(l.rolling_mean, l.n) + abs_sum(l.rolling_variance, l.n);
            fprintf(out, "\t%.12g\t%.12g", abs_sum(l.weights, l.nweights), bn);
        }
        fprintf(out, "\n");
        fflush(out);
        fprintf(stderr, "step %d: loss %f\n", s + 1, cost / net->batch);
    }
    fclose(out);
    save_weights(net, argv[8]);
    return 0;
}
