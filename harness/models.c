/* models.c -- the architectures, sized from the dataset's shape and class count. Every model starts
 * with L_NORM (so data and attacks stay in [0,1] pixel space) and ends with the logits (or, with
 * head "hash", a tanh code layer of `classes` bits).
 * CIFAR-style conv nets (alexnet, vgg16, resnet18, resnet20) accept any input channel count and any
 * size the pooling allows (32x32 is the design size); `width` scales every channel count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/model.h"

const ArchInfo ARCHS[] = {
    {"mlp", "multi-layer perceptron, ReLU (--hidden 256,256)", "hidden"},
    {"lenet5", "LeNet-5: conv6 5x5 pad2, pool, conv16 5x5, pool, fc 120-84-K", ""},
    {"alexnet", "CIFAR-style AlexNet: 5 conv (64-192-384-256-256), 3 pools, fc 512-512-K, dropout", "width dropout"},
    {"vgg16", "VGG-16 with batch-norm (13 conv + fc), CIFAR-style", "width dropout"},
    {"resnet18", "ResNet-18, CIFAR-style (3x3 stem, no max-pool), BasicBlocks [2,2,2,2]", "width"},
    {"resnet20", "ResNet-20 (He et al. 2016, CIFAR): 3 stages x 3 BasicBlocks, 16-32-64", "width"},
};
const int N_ARCHS = (int)ARRAY_LEN(ARCHS);

void model_spec_default(ModelSpec *s, const char *arch, int c, int h, int w, int classes) {
    memset(s, 0, sizeof *s);
    snprintf(s->arch, sizeof s->arch, "%s", arch);
    s->in_c = c; s->in_h = h; s->in_w = w; s->classes = classes;
    s->width = 1.0f;
    snprintf(s->hidden, sizeof s->hidden, "256,256");
    s->dropout = 0.5f;
    snprintf(s->head, sizeof s->head, "softmax");
}

const ArchInfo *model_arch_find(const char *name) {
    for (int a = 0; a < N_ARCHS; a++)
        if (str_eq(ARCHS[a].name, name)) return &ARCHS[a];
    return NULL;
}

/* 1 when the space-separated word list has w */
static int has_word(const char *list, const char *w) {
    size_t n = strlen(w);
    for (const char *p = list; n && (p = strstr(p, w)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
    return 0;
}

int model_arch_uses(const ArchInfo *arch, const char *opt) {
    if (!has_word("hidden width dropout", opt)) return -1;
    return has_word(arch->opts, opt);
}

int model_hidden_parse(const char *text, int *widths, int max) {
    int n = 0;
    if (!*text || str_eq(text, "none")) return 0; /* a linear model: the input normalisation, then the head */
    for (const char *p = text;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char item[24];
        long w;
        if (len == 0 || len >= sizeof item) return err_set("--hidden %s: expected comma-separated positive widths such as 256,256", text);
        memcpy(item, p, len);
        item[len] = 0;
        if (parse_int(item, 1, 1 << 20, &w) < 0)
            return err_set("--hidden %s: '%s' is not a width from 1 to %d; expected comma-separated widths such as 256,256", text, item, 1 << 20);
        if (n == max) return err_set("--hidden %s: at most %d hidden layers", text, max);
        widths[n++] = (int)w;
        if (!e) break;
        p = e + 1;
    }
    return n;
}

static int ch(const ModelSpec *s, int c) {
    int v = (int)lroundf(c * s->width);
    return v < 1 ? 1 : v;
}

static int head(Model *m, const char *name, int x) {
    x = model_add_linear(m, name, x, m->spec.classes);
    if (str_eq(m->spec.head, "hash")) x = model_add(m, L_TANH, "", x);
    return x;
}

static int build_mlp(Model *m) {
    int x = model_add(m, L_NORM, "norm", -1);
    x = model_add(m, L_FLATTEN, "", x);
    char name[16];
    int widths[MODEL_MAX_HIDDEN], nh = model_hidden_parse(m->spec.hidden, widths, MODEL_MAX_HIDDEN);
    if (nh < 0) return -1;
    int k = 1;
    for (int i = 0; i < nh; i++) {
        snprintf(name, sizeof name, "fc%d", k++);
        x = model_add_linear(m, name, x, widths[i]);
        x = model_add(m, L_RELU, "", x);
    }
    snprintf(name, sizeof name, "fc%d", k);
    head(m, name, x);
    return 0;
}

static int build_lenet5(Model *m) {
    if (m->spec.in_h < 12 || m->spec.in_w < 12) return err_set("lenet5 needs inputs of at least 12x12");
    int x = model_add(m, L_NORM, "norm", -1);
    x = model_add_conv(m, "conv1", x, 6, 5, 1, 2, 1);
    x = model_add(m, L_RELU, "", x);
    x = model_add_pool(m, L_MAXPOOL, x, 2, 2);
    x = model_add_conv(m, "conv2", x, 16, 5, 1, 0, 1);
    x = model_add(m, L_RELU, "", x);
    x = model_add_pool(m, L_MAXPOOL, x, 2, 2);
    x = model_add(m, L_FLATTEN, "", x);
    x = model_add_linear(m, "fc1", x, 120);
    x = model_add(m, L_RELU, "", x);
    x = model_add_linear(m, "fc2", x, 84);
    x = model_add(m, L_RELU, "", x);
    head(m, "fc3", x);
    return 0;
}

static int build_alexnet(Model *m) {
    const ModelSpec *s = &m->spec;
    if (s->in_h < 8 || s->in_w < 8) return err_set("alexnet needs inputs of at least 8x8");
    int x = model_add(m, L_NORM, "norm", -1);
    static const int cfg[5] = {64, 192, 384, 256, 256};
    char name[32];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "features.conv%d", i + 1);
        int k = i < 2 ? 5 : 3;
        x = model_add_conv(m, name, x, ch(s, cfg[i]), k, 1, k / 2, 1);
        x = model_add(m, L_RELU, "", x);
        if (i < 2 || i == 4) x = model_add_pool(m, L_MAXPOOL, x, 2, 2);
    }
    x = model_add(m, L_FLATTEN, "", x);
    x = model_add_dropout(m, x, s->dropout);
    x = model_add_linear(m, "classifier.fc1", x, ch(s, 512));
    x = model_add(m, L_RELU, "", x);
    x = model_add_dropout(m, x, s->dropout);
    x = model_add_linear(m, "classifier.fc2", x, ch(s, 512));
    x = model_add(m, L_RELU, "", x);
    head(m, "classifier.fc3", x);
    return 0;
}

static int build_vgg16(Model *m) {
    const ModelSpec *s = &m->spec;
    if (s->in_h < 32 || s->in_w < 32) return err_set("vgg16 needs inputs of at least 32x32 (5 poolings)");
    static const int cfg[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
    int x = model_add(m, L_NORM, "norm", -1), k = 0;
    char name[32];
    for (int i = 0; i < (int)ARRAY_LEN(cfg); i++) {
        if (!cfg[i]) { x = model_add_pool(m, L_MAXPOOL, x, 2, 2); continue; }
        snprintf(name, sizeof name, "features.conv%d", ++k);
        x = model_add_conv(m, name, x, ch(s, cfg[i]), 3, 1, 1, 1);
        snprintf(name, sizeof name, "features.bn%d", k);
        x = model_add(m, L_BN, name, x);
        x = model_add(m, L_RELU, "", x);
    }
    x = model_add(m, L_FLATTEN, "", x);
    x = model_add_dropout(m, x, s->dropout);
    head(m, "classifier", x);
    return 0;
}

/* BasicBlock: conv3x3-bn-relu-conv3x3-bn, + identity or 1x1-conv/bn projection, relu */
static int basic_block(Model *m, const char *pre, int x, int planes, int stride) {
    char n1[48], n2[48];
    int inc = x < 0 ? m->spec.in_c : m->L[x].c;
    snprintf(n1, sizeof n1, "%s.conv1", pre);
    int y = model_add_conv(m, n1, x, planes, 3, stride, 1, 0);
    snprintf(n1, sizeof n1, "%s.bn1", pre);
    y = model_add(m, L_BN, n1, y);
    y = model_add(m, L_RELU, "", y);
    snprintf(n1, sizeof n1, "%s.conv2", pre);
    y = model_add_conv(m, n1, y, planes, 3, 1, 1, 0);
    snprintf(n1, sizeof n1, "%s.bn2", pre);
    y = model_add(m, L_BN, n1, y);
    int sc = x;
    if (stride != 1 || inc != planes) {
        snprintf(n2, sizeof n2, "%s.shortcut.0", pre);
        sc = model_add_conv(m, n2, x, planes, 1, stride, 0, 0);
        snprintf(n2, sizeof n2, "%s.shortcut.1", pre);
        sc = model_add(m, L_BN, n2, sc);
    }
    y = model_add_add(m, y, sc);
    return model_add(m, L_RELU, "", y);
}

static int build_resnet(Model *m, int stages, const int *planes, const int *blocks) {
    const ModelSpec *s = &m->spec;
    int minsz = 1 << (stages - 1);
    if (s->in_h < minsz || s->in_w < minsz) return err_set("%s needs inputs of at least %dx%d", s->arch, minsz, minsz);
    int x = model_add(m, L_NORM, "norm", -1);
    x = model_add_conv(m, "conv1", x, ch(s, planes[0]), 3, 1, 1, 0);
    x = model_add(m, L_BN, "bn1", x);
    x = model_add(m, L_RELU, "", x);
    char pre[32];
    for (int st = 0; st < stages; st++)
        for (int b = 0; b < blocks[st]; b++) {
            snprintf(pre, sizeof pre, "layer%d.%d", st + 1, b);
            x = basic_block(m, pre, x, ch(s, planes[st]), (st > 0 && b == 0) ? 2 : 1);
        }
    x = model_add(m, L_GAP, "", x);
    x = model_add(m, L_FLATTEN, "", x);
    head(m, "linear", x);
    return 0;
}

static int build_resnet18(Model *m) {
    static const int planes[4] = {64, 128, 256, 512}, blocks[4] = {2, 2, 2, 2};
    return build_resnet(m, 4, planes, blocks);
}
static int build_resnet20(Model *m) {
    static const int planes[3] = {16, 32, 64}, blocks[3] = {3, 3, 3};
    return build_resnet(m, 3, planes, blocks);
}

typedef int (*BuildFn)(Model *);
static const BuildFn BUILDERS[] = {build_mlp, build_lenet5, build_alexnet, build_vgg16, build_resnet18, build_resnet20};
_Static_assert(ARRAY_LEN(BUILDERS) == 6, "one builder per ARCHS entry");

Model *model_build(const ModelSpec *spec) {
    if (spec->in_c < 1 || spec->in_h < 1 || spec->in_w < 1 || spec->classes < 1) {
        err_set("model %s: bad input shape %dx%dx%d or class count %d", spec->arch, spec->in_c, spec->in_h, spec->in_w, spec->classes);
        return NULL;
    }
    if (!(spec->width > 0) || spec->width > 64) { err_set("--width %g: expected a multiplier in (0, 64]", spec->width); return NULL; }
    for (int a = 0; a < N_ARCHS; a++) {
        if (!str_eq(ARCHS[a].name, spec->arch)) continue;
        Model *m = xcalloc(1, sizeof *m);
        model_init(m, spec);
        if (BUILDERS[a](m) < 0) { free(m); return NULL; }
        return m;
    }
    char all[256] = "";
    for (int a = 0; a < N_ARCHS; a++) { strcat(all, ARCHS[a].name); if (a + 1 < N_ARCHS) strcat(all, ", "); }
    err_set("unknown model '%s'; available: %s (see concord models)", spec->arch, all);
    return NULL;
}
