/*
 * fake_nvml.c - a stand-in for libnvidia-ml.so.1 that answers from a topology file.
 *
 * Copyright: (c) 2026, inferops.gpu contributors
 * GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
 *
 * The UNMODIFIED pynvml (nvidia-ml-py 12.535 .. 13.615, Debian's python3-pynvml 12.550) loads this
 * library as "libnvidia-ml.so.1" and calls the C symbols below.  Every answer comes from the
 * topology file named by $FAKE_NVML_TOPOLOGY (default /etc/fake-nvml/topology.conf), which is
 * re-read whenever the init refcount goes from 0 to 1.  See README.md for the file format.
 *
 * Only gcc and libc are needed.  Handles are pointers into the library's own device table.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API __attribute__((visibility("default")))

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

#define DEFAULT_TOPOLOGY "/etc/fake-nvml/topology.conf"
#define MAX_DEVICES 64
#define MAX_INCLUDE_DEPTH 8
#define VALUE_NOT_AVAILABLE_ULL (~0ULL)

/* ------------------------------------------------------------------------------------------ */
/* Name tables                                                                                */

struct name_value {
    const char *name;
    long long value;
};

static const struct name_value ERROR_NAMES[] = {
    {"SUCCESS", 0}, {"OK", 0},
    {"UNINITIALIZED", 1}, {"INVALID_ARGUMENT", 2}, {"NOT_SUPPORTED", 3}, {"NO_PERMISSION", 4},
    {"ALREADY_INITIALIZED", 5}, {"NOT_FOUND", 6}, {"INSUFFICIENT_SIZE", 7},
    {"INSUFFICIENT_POWER", 8}, {"DRIVER_NOT_LOADED", 9}, {"TIMEOUT", 10}, {"IRQ_ISSUE", 11},
    {"LIBRARY_NOT_FOUND", 12}, {"FUNCTION_NOT_FOUND", 13}, {"CORRUPTED_INFOROM", 14},
    {"GPU_IS_LOST", 15}, {"RESET_REQUIRED", 16}, {"OPERATING_SYSTEM", 17},
    {"LIB_RM_VERSION_MISMATCH", 18}, {"IN_USE", 19}, {"MEMORY", 20}, {"NO_DATA", 21},
    {"VGPU_ECC_NOT_SUPPORTED", 22}, {"INSUFFICIENT_RESOURCES", 23}, {"FREQ_NOT_SUPPORTED", 24},
    {"ARGUMENT_VERSION_MISMATCH", 25}, {"DEPRECATED", 26}, {"NOT_READY", 27},
    {"GPU_NOT_FOUND", 28}, {"INVALID_STATE", 29}, {"RESET_TYPE_NOT_SUPPORTED", 30},
    {"UNKNOWN", 999}, {NULL, 0},
};

static const struct name_value P2P_STATUS_NAMES[] = {
    {"OK", 0}, {"CHIPSET_NOT_SUPPORTED", 1}, {"CNS", 1}, {"GPU_NOT_SUPPORTED", 2}, {"GNS", 2},
    {"IOH_TOPOLOGY_NOT_SUPPORTED", 3}, {"TNS", 3}, {"DISABLED_BY_REGKEY", 4},
    {"NOT_SUPPORTED", 5}, {"NS", 5}, {"UNKNOWN", 6}, {NULL, 0},
};

static const struct name_value TOPOLOGY_NAMES[] = {
    {"INTERNAL", 0}, {"SINGLE", 10}, {"PIX", 10}, {"MULTIPLE", 20}, {"PXB", 20},
    {"HOSTBRIDGE", 30}, {"PHB", 30}, {"NODE", 40}, {"CPU", 40}, {"SYSTEM", 50}, {"SYS", 50},
    {NULL, 0},
};

static const struct name_value COMPUTE_MODE_NAMES[] = {
    {"DEFAULT", 0}, {"EXCLUSIVE_THREAD", 1}, {"PROHIBITED", 2}, {"EXCLUSIVE_PROCESS", 3},
    {NULL, 0},
};

static const struct name_value VIRTUALIZATION_NAMES[] = {
    {"NONE", 0}, {"PASSTHROUGH", 1}, {"VGPU", 2}, {"HOST_VGPU", 3}, {"HOST_VSGA", 4},
    {NULL, 0},
};

static const struct name_value BOOL_NAMES[] = {
    {"0", 0}, {"1", 1}, {"off", 0}, {"on", 1}, {"disabled", 0}, {"enabled", 1},
    {"false", 0}, {"true", 1}, {NULL, 0},
};

/* p2p index -> key word */
static const char *const P2P_INDEX_KEYS[] = {"read", "write", "nvlink", "atomics", "pci"};
/* temperature threshold -> key word (nvmlTemperatureThresholds_t) */
static const char *const THRESHOLD_KEYS[] = {
    "shutdown", "slowdown", "mem_max", "gpu_max", "acoustic_min", "acoustic_curr",
    "acoustic_max", "gps_curr",
};

static const char *error_string(nvmlReturn_t code)
{
    switch (code) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt Request Issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 22: return "The requested vgpu operation is not available on target device, because ECC is enabled";
    case 23: return "Insufficient resources";
    case 24: return "Frequency not supported";
    case 25: return "Argument version mismatch";
    case 26: return "Deprecated";
    case 27: return "Not Ready";
    case 28: return "GPU not found";
    case 29: return "Invalid state";
    case 30: return "Reset type not supported";
    default: return "Unknown Error";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Topology file                                                                              */

struct entry {
    char *key;
    char *value;
    int components;
    int score;
};

struct fake_device {
    unsigned index;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *entries;
static size_t entry_count, entry_capacity;
static int refcount;
static unsigned device_count;
static struct fake_device devices[MAX_DEVICES];
static char topology_path[PATH_MAX];

static void fake_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fake_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fake-nvml: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void free_entries(void)
{
    for (size_t i = 0; i < entry_count; i++) {
        free(entries[i].key);
        free(entries[i].value);
    }
    free(entries);
    entries = NULL;
    entry_count = entry_capacity = 0;
}

/* Component kinds: '*' (matches anything), "A-B" (a number from A to B), or literal text. */
static int range_bounds(const char *c, size_t len, unsigned long *lo, unsigned long *hi)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, c, len);
    buf[len] = '\0';
    char *dash = strchr(buf, '-');
    if (!dash || dash == buf || !dash[1])
        return 0;
    for (char *q = buf; *q; q++)
        if (!isdigit((unsigned char)*q) && q != dash)
            return 0;
    *lo = strtoul(buf, NULL, 10);
    *hi = strtoul(dash + 1, NULL, 10);
    return 1;
}

/* Number of components; *score = specificity (literal 2, range 1, '*' 0 per component). */
static int count_components(const char *key, int *score)
{
    int n = 0, sc = 0;
    const char *start = key;
    for (const char *p = key;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t len = (size_t)(p - start);
            unsigned long lo, hi;
            if (len == 1 && *start == '*')
                sc += 0;
            else if (range_bounds(start, len, &lo, &hi))
                sc += 1;
            else
                sc += 2;
            n++;
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    *score = sc;
    return n;
}

static int add_entry(const char *key, const char *value)
{
    if (entry_count == entry_capacity) {
        size_t cap = entry_capacity ? entry_capacity * 2 : 256;
        struct entry *grown = realloc(entries, cap * sizeof(*grown));
        if (!grown)
            return -1;
        entries = grown;
        entry_capacity = cap;
    }
    struct entry *e = &entries[entry_count];
    e->key = strdup(key);
    e->value = strdup(value);
    if (!e->key || !e->value) {
        free(e->key);
        free(e->value);
        return -1;
    }
    e->components = count_components(key, &e->score);
    entry_count++;
    return 0;
}

static int parse_name(const struct name_value *table, const char *text, long long *out)
{
    for (const struct name_value *nv = table; nv->name; nv++) {
        if (strcasecmp(nv->name, text) == 0) {
            *out = nv->value;
            return 0;
        }
    }
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 0);
    if (errno || end == text || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static int load_file(const char *path, int depth)
{
    if (depth > MAX_INCLUDE_DEPTH) {
        fake_warn("%s: includes nested too deeply", path);
        return -1;
    }
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        fake_warn("cannot open topology %s: %s", path, strerror(errno));
        return -1;
    }
    FILE *f = fopen(real, "r");
    if (!f) {
        fake_warn("cannot open topology %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t size = 0;
    int lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &size, f) != -1) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *value = s;
        while (*value && !isspace((unsigned char)*value))
            value++;
        if (*value)
            *value++ = '\0';
        value = trim(value);
        if (strcmp(s, "include") == 0) {
            char incpath[PATH_MAX * 2];
            if (value[0] == '/') {
                snprintf(incpath, sizeof(incpath), "%s", value);
            } else {
                char dir[PATH_MAX];
                snprintf(dir, sizeof(dir), "%s", real);
                char *slash = strrchr(dir, '/');
                if (slash)
                    *slash = '\0';
                snprintf(incpath, sizeof(incpath), "%s/%s", dir, value);
            }
            rc = load_file(incpath, depth + 1);
            continue;
        }
        if (strncasecmp(value, "error:", 6) == 0) {
            long long code;
            if (parse_name(ERROR_NAMES, value + 6, &code) != 0) {
                fake_warn("%s:%d: unknown NVML error '%s'", real, lineno, value + 6);
                rc = -1;
                continue;
            }
        }
        if (add_entry(s, value) != 0) {
            fake_warn("out of memory");
            rc = -1;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* Does pattern (components '*', 'A-B' or literal) match the concrete key? */
static int component_matches(const char *p, size_t pl, const char *k, size_t kl)
{
    if (pl == 1 && *p == '*')
        return 1;
    if (pl == kl && strncmp(p, k, pl) == 0)
        return 1;
    unsigned long lo, hi;
    if (range_bounds(p, pl, &lo, &hi)) {
        if (kl == 0 || kl > 9)
            return 0;
        unsigned long v = 0;
        for (size_t i = 0; i < kl; i++) {
            if (!isdigit((unsigned char)k[i]))
                return 0;
            v = v * 10 + (unsigned long)(k[i] - '0');
        }
        return v >= lo && v <= hi;
    }
    return 0;
}

static int key_matches(const char *pattern, const char *key)
{
    const char *p = pattern, *k = key;
    for (;;) {
        const char *pe = strchr(p, '.');
        const char *ke = strchr(k, '.');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t kl = ke ? (size_t)(ke - k) : strlen(k);
        if (!component_matches(p, pl, k, kl))
            return 0;
        if (!pe || !ke)
            return !pe && !ke;
        p = pe + 1;
        k = ke + 1;
    }
}

/* The most specific matching line wins; among equally specific lines, the later one. */
static const struct entry *find_entry(const char *key)
{
    int lit;
    int components = count_components(key, &lit);
    const struct entry *best = NULL;
    for (size_t i = 0; i < entry_count; i++) {
        const struct entry *e = &entries[i];
        if (e->components != components || !key_matches(e->key, key))
            continue;
        if (!best || e->score >= best->score)
            best = e;
    }
    return best;
}

static const struct entry *find_entryf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const struct entry *find_entryf(const char *fmt, ...)
{
    char key[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    return find_entry(key);
}

/* SUCCESS with *value, the configured NVML error, or NOT_SUPPORTED when no line says anything. */
static nvmlReturn_t entry_value(const struct entry *e, const char **value)
{
    if (!e)
        return NVML_ERROR_NOT_SUPPORTED;
    if (strncasecmp(e->value, "error:", 6) == 0) {
        long long code = NVML_ERROR_UNKNOWN;
        parse_name(ERROR_NAMES, e->value + 6, &code);
        return (nvmlReturn_t)code;
    }
    *value = e->value;
    return NVML_SUCCESS;
}

static nvmlReturn_t bad_value(const struct entry *e, const char *what)
{
    fake_warn("%s: '%s' is not %s", e->key, e->value, what);
    return NVML_ERROR_UNKNOWN;
}

static int parse_ull(const char *text, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (*text == '-')
        return -1;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno || end == text)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    static const struct { const char *suffix; unsigned long long factor; } units[] = {
        {"", 1ULL}, {"B", 1ULL}, {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20},
        {"GiB", 1ULL << 30}, {"TiB", 1ULL << 40},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            *out = v * units[i].factor;
            return 0;
        }
    }
    return -1;
}

static nvmlReturn_t get_ull(const struct entry *e, unsigned long long *out)
{
    const char *v = NULL;
    nvmlReturn_t r = entry_value(e, &v);
    if (r != NVML_SUCCESS)
        return r;
    if (parse_ull(v, out) != 0)
        return bad_value(e, "an unsigned number");
    return NVML_SUCCESS;
}

static nvmlReturn_t get_uint(const struct entry *e, unsigned int *out)
{
    unsigned long long v;
    nvmlReturn_t r = get_ull(e, &v);
    if (r != NVML_SUCCESS)
        return r;
    if (v > UINT_MAX)
        return bad_value(e, "a 32-bit number");
    *out = (unsigned int)v;
    return NVML_SUCCESS;
}

static nvmlReturn_t get_named(const struct entry *e, const struct name_value *table, long long *out)
{
    const char *v = NULL;
    nvmlReturn_t r = entry_value(e, &v);
    if (r != NVML_SUCCESS)
        return r;
    if (parse_name(table, v, out) != 0)
        return bad_value(e, "a known name or number");
    return NVML_SUCCESS;
}

/* A whitespace-separated list of n unsigned ints ("1 0" for [current, pending]). */
static nvmlReturn_t get_uints(const struct entry *e, unsigned int *out, int n)
{
    const char *v = NULL;
    nvmlReturn_t r = entry_value(e, &v);
    if (r != NVML_SUCCESS)
        return r;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", v);
    char *save = NULL, *tok = strtok_r(buf, " \t,", &save);
    for (int i = 0; i < n; i++, tok = strtok_r(NULL, " \t,", &save)) {
        long long x;
        if (!tok || parse_name(BOOL_NAMES, tok, &x) != 0 || x < 0 || x > UINT_MAX)
            return bad_value(e, "a list of unsigned numbers");
        out[i] = (unsigned int)x;
    }
    if (tok)
        return bad_value(e, "a list of the right length");
    return NVML_SUCCESS;
}

/* Copy a string value into an NVML buffer, expanding {i} to the GPU index. */
static nvmlReturn_t get_string(const struct entry *e, unsigned index, char *buf, unsigned length)
{
    const char *v = NULL;
    nvmlReturn_t r = entry_value(e, &v);
    if (r != NVML_SUCCESS)
        return r;
    if (!buf)
        return NVML_ERROR_INVALID_ARGUMENT;
    char expanded[512];
    size_t o = 0;
    for (const char *p = v; *p && o + 12 < sizeof(expanded); p++) {
        if (strncmp(p, "{i}", 3) == 0) {
            o += (size_t)snprintf(expanded + o, sizeof(expanded) - o, "%u", index);
            p += 2;
        } else {
            expanded[o++] = *p;
        }
    }
    expanded[o] = '\0';
    if (o + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, expanded, o + 1);
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Init / shutdown                                                                            */

static nvmlReturn_t load_topology(void)
{
    const char *path = getenv("FAKE_NVML_TOPOLOGY");
    if (!path || !*path)
        path = DEFAULT_TOPOLOGY;
    snprintf(topology_path, sizeof(topology_path), "%s", path);
    free_entries();
    device_count = 0;
    if (load_file(path, 0) != 0) {
        free_entries();
        return NVML_ERROR_UNKNOWN;
    }
    const char *v = NULL;
    nvmlReturn_t r = entry_value(find_entry("init"), &v);
    if (r == NVML_ERROR_NOT_SUPPORTED && !find_entry("init"))
        r = NVML_SUCCESS; /* no init line: init succeeds */
    if (r != NVML_SUCCESS)
        return r;
    unsigned count = 0;
    const struct entry *e = find_entry("gpu.count");
    if (e) {
        unsigned long long c;
        const char *dummy = NULL;
        if (entry_value(e, &dummy) == NVML_SUCCESS) {
            if (parse_ull(dummy, &c) != 0 || c > MAX_DEVICES) {
                fake_warn("gpu.count '%s' is not a number up to %d", e->value, MAX_DEVICES);
                return NVML_ERROR_UNKNOWN;
            }
            count = (unsigned)c;
        }
    }
    device_count = count;
    for (unsigned i = 0; i < MAX_DEVICES; i++)
        devices[i].index = i;
    return NVML_SUCCESS;
}

static nvmlReturn_t init_locked(void)
{
    if (refcount > 0) {
        refcount++;
        return NVML_SUCCESS;
    }
    nvmlReturn_t r = load_topology();
    if (r == NVML_SUCCESS)
        refcount = 1;
    return r;
}

#define LOCKED(expr)                          \
    do {                                      \
        pthread_mutex_lock(&lock);            \
        nvmlReturn_t locked_r_ = (expr);      \
        pthread_mutex_unlock(&lock);          \
        return locked_r_;                     \
    } while (0)

API nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    LOCKED(init_locked());
}

API nvmlReturn_t nvmlInit_v2(void)
{
    LOCKED(init_locked());
}

API nvmlReturn_t nvmlInit(void)
{
    LOCKED(init_locked());
}

static nvmlReturn_t shutdown_locked(void)
{
    if (refcount == 0)
        return NVML_ERROR_UNINITIALIZED;
    refcount--;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlShutdown(void)
{
    LOCKED(shutdown_locked());
}

API const char *nvmlErrorString(nvmlReturn_t result)
{
    return error_string(result);
}

/* Test hooks, not NVML: the current init refcount, and a forced reset to 0. */
API int fake_nvml_refcount(void)
{
    pthread_mutex_lock(&lock);
    int r = refcount;
    pthread_mutex_unlock(&lock);
    return r;
}

API void fake_nvml_reset(void)
{
    pthread_mutex_lock(&lock);
    refcount = 0;
    pthread_mutex_unlock(&lock);
}

API const char *fake_nvml_topology_path(void)
{
    return topology_path;
}

/* ------------------------------------------------------------------------------------------ */
/* System                                                                                     */

static nvmlReturn_t system_string(const char *key, char *buf, unsigned int length)
{
    if (!refcount)
        return NVML_ERROR_UNINITIALIZED;
    return get_string(find_entry(key), 0, buf, length);
}

API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    LOCKED(system_string("driver.version", version, length));
}

API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    LOCKED(system_string("driver.nvml_version", version, length));
}

static nvmlReturn_t cuda_version(int *out)
{
    if (!refcount)
        return NVML_ERROR_UNINITIALIZED;
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int v;
    nvmlReturn_t r = get_uint(find_entry("driver.cuda_version"), &v);
    if (r == NVML_SUCCESS)
        *out = (int)v;
    return r;
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    LOCKED(cuda_version(cudaDriverVersion));
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    LOCKED(cuda_version(cudaDriverVersion));
}

/* ------------------------------------------------------------------------------------------ */
/* Devices                                                                                    */

static nvmlReturn_t device_count_locked(unsigned int *count)
{
    if (!refcount)
        return NVML_ERROR_UNINITIALIZED;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    const char *v = NULL;
    const struct entry *e = find_entry("gpu.count");
    if (e) {
        nvmlReturn_t r = entry_value(e, &v);
        if (r != NVML_SUCCESS)
            return r;
    }
    *count = device_count;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    LOCKED(device_count_locked(deviceCount));
}

API nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount)
{
    LOCKED(device_count_locked(deviceCount));
}

static nvmlReturn_t handle_by_index(unsigned int index, nvmlDevice_t *device)
{
    if (!refcount)
        return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= device_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    const struct entry *e = find_entryf("gpu.%u.handle", index);
    if (e) {
        const char *v = NULL;
        nvmlReturn_t r = entry_value(e, &v);
        if (r != NVML_SUCCESS)
            return r;
    }
    *device = &devices[index];
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    LOCKED(handle_by_index(index, device));
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    LOCKED(handle_by_index(index, device));
}

/* Resolve a handle to its index, or fail the way NVML does. */
static nvmlReturn_t device_index(nvmlDevice_t device, unsigned *index)
{
    if (!refcount)
        return NVML_ERROR_UNINITIALIZED;
    uintptr_t p = (uintptr_t)device, base = (uintptr_t)devices;
    if (!device || p < base || p >= base + sizeof(devices) ||
        (p - base) % sizeof(devices[0]) != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned i = (unsigned)((p - base) / sizeof(devices[0]));
    if (i >= device_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = i;
    return NVML_SUCCESS;
}

#define WITH_DEVICE(device, idx)                          \
    unsigned idx;                                         \
    do {                                                  \
        nvmlReturn_t dr_ = device_index((device), &idx);  \
        if (dr_ != NVML_SUCCESS)                          \
            return dr_;                                   \
    } while (0)

static nvmlReturn_t device_string(nvmlDevice_t device, const char *item, char *buf, unsigned int length)
{
    WITH_DEVICE(device, i);
    return get_string(find_entryf("gpu.%u.%s", i, item), i, buf, length);
}

static nvmlReturn_t device_uint(nvmlDevice_t device, const char *item, unsigned int *out)
{
    WITH_DEVICE(device, i);
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    return get_uint(find_entryf("gpu.%u.%s", i, item), out);
}

static nvmlReturn_t device_ull(nvmlDevice_t device, const char *item, unsigned long long *out)
{
    WITH_DEVICE(device, i);
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    return get_ull(find_entryf("gpu.%u.%s", i, item), out);
}

static nvmlReturn_t device_named(nvmlDevice_t device, const char *item,
                                 const struct name_value *table, long long *out)
{
    WITH_DEVICE(device, i);
    return get_named(find_entryf("gpu.%u.%s", i, item), table, out);
}

API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    LOCKED(device_string(device, "name", name, length));
}

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    LOCKED(device_string(device, "uuid", uuid, length));
}

API nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length)
{
    LOCKED(device_string(device, "serial", serial, length));
}

API nvmlReturn_t nvmlDeviceGetVbiosVersion(nvmlDevice_t device, char *version, unsigned int length)
{
    LOCKED(device_string(device, "vbios_version", version, length));
}

API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    pthread_mutex_lock(&lock);
    unsigned i = 0;
    nvmlReturn_t r = device_index(device, &i);
    if (r == NVML_SUCCESS) {
        if (index)
            *index = i;
        else
            r = NVML_ERROR_INVALID_ARGUMENT;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber)
{
    LOCKED(device_uint(device, "minor_number", minorNumber));
}

/* --- PCI ---------------------------------------------------------------------------------- */

typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t; /* v3 */

typedef struct {
    char busId[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    unsigned int reserved0, reserved1, reserved2, reserved3;
} nvmlPciInfo_v2_t; /* v1 and v2 */

struct pci_fields {
    char bus_id[32];
    unsigned domain, bus, dev, function;
    unsigned device_id, subsystem_id;
};

static nvmlReturn_t pci_fields(nvmlDevice_t device, struct pci_fields *pf)
{
    WITH_DEVICE(device, i);
    memset(pf, 0, sizeof(*pf));
    nvmlReturn_t r = get_string(find_entryf("gpu.%u.pci_bus_id", i), i, pf->bus_id, sizeof(pf->bus_id));
    if (r != NVML_SUCCESS)
        return r;
    if (sscanf(pf->bus_id, "%x:%x:%x.%x", &pf->domain, &pf->bus, &pf->dev, &pf->function) != 4)
        return bad_value(find_entryf("gpu.%u.pci_bus_id", i), "a PCI bus id DDDDDDDD:BB:DD.F");
    r = get_uint(find_entryf("gpu.%u.pci_device_id", i), &pf->device_id);
    if (r == NVML_ERROR_NOT_SUPPORTED)
        pf->device_id = 0;
    else if (r != NVML_SUCCESS)
        return r;
    r = get_uint(find_entryf("gpu.%u.pci_subsystem_id", i), &pf->subsystem_id);
    if (r == NVML_ERROR_NOT_SUPPORTED)
        pf->subsystem_id = 0;
    else if (r != NVML_SUCCESS)
        return r;
    return NVML_SUCCESS;
}

static nvmlReturn_t pci_info_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    struct pci_fields pf;
    nvmlReturn_t r = pci_fields(device, &pf);
    if (r != NVML_SUCCESS)
        return r;
    if (!pci)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof(*pci));
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.%X",
             pf.domain & 0xffff, pf.bus & 0xff, pf.dev & 0xff, pf.function & 0xf);
    snprintf(pci->busId, sizeof(pci->busId), "%08X:%02X:%02X.%X",
             pf.domain, pf.bus & 0xff, pf.dev & 0xff, pf.function & 0xf);
    pci->domain = pf.domain;
    pci->bus = pf.bus;
    pci->device = pf.dev;
    pci->pciDeviceId = pf.device_id;
    pci->pciSubSystemId = pf.subsystem_id;
    return NVML_SUCCESS;
}

static nvmlReturn_t pci_info_v2(nvmlDevice_t device, nvmlPciInfo_v2_t *pci)
{
    struct pci_fields pf;
    nvmlReturn_t r = pci_fields(device, &pf);
    if (r != NVML_SUCCESS)
        return r;
    if (!pci)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof(*pci));
    snprintf(pci->busId, sizeof(pci->busId), "%04X:%02X:%02X.%X",
             pf.domain & 0xffff, pf.bus & 0xff, pf.dev & 0xff, pf.function & 0xf);
    pci->domain = pf.domain;
    pci->bus = pf.bus;
    pci->device = pf.dev;
    pci->pciDeviceId = pf.device_id;
    pci->pciSubSystemId = pf.subsystem_id;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    LOCKED(pci_info_v3(device, pci));
}

API nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_v2_t *pci)
{
    LOCKED(pci_info_v2(device, pci));
}

API nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_v2_t *pci)
{
    LOCKED(pci_info_v2(device, pci));
}

static nvmlReturn_t handle_by_bus_id(const char *bus_id, nvmlDevice_t *device)
{
    if (!refcount)
        return NVML_ERROR_UNINITIALIZED;
    if (!bus_id || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned d, b, dv, fn = 0;
    if (sscanf(bus_id, "%x:%x:%x.%x", &d, &b, &dv, &fn) < 3)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < device_count; i++) {
        struct pci_fields pf;
        if (pci_fields(&devices[i], &pf) != NVML_SUCCESS)
            continue;
        if (pf.domain == d && pf.bus == b && pf.dev == dv && pf.function == fn)
            return handle_by_index(i, device);
    }
    return 6; /* NVML_ERROR_NOT_FOUND */
}

API nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    LOCKED(handle_by_bus_id(pciBusId, device));
}

API nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device)
{
    LOCKED(handle_by_bus_id(pciBusId, device));
}

static nvmlReturn_t handle_by_uuid(const char *uuid, nvmlDevice_t *device)
{
    if (!refcount)
        return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < device_count; i++) {
        char buf[128];
        if (get_string(find_entryf("gpu.%u.uuid", i), i, buf, sizeof(buf)) == NVML_SUCCESS &&
            strcmp(buf, uuid) == 0)
            return handle_by_index(i, device);
    }
    return 6; /* NVML_ERROR_NOT_FOUND */
}

API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    LOCKED(handle_by_uuid(uuid, device));
}

/* --- memory ------------------------------------------------------------------------------- */

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

#define NVML_MEMORY_V2 0x02000028u

struct memory {
    unsigned long long total, reserved, used;
};

static nvmlReturn_t read_memory(nvmlDevice_t device, struct memory *m)
{
    WITH_DEVICE(device, i);
    nvmlReturn_t r = get_ull(find_entryf("gpu.%u.memory.total", i), &m->total);
    if (r != NVML_SUCCESS)
        return r;
    m->used = m->reserved = 0;
    r = get_ull(find_entryf("gpu.%u.memory.used", i), &m->used);
    if (r != NVML_SUCCESS && r != NVML_ERROR_NOT_SUPPORTED)
        return r;
    r = get_ull(find_entryf("gpu.%u.memory.reserved", i), &m->reserved);
    if (r != NVML_SUCCESS && r != NVML_ERROR_NOT_SUPPORTED)
        return r;
    if (m->used + m->reserved > m->total) {
        fake_warn("gpu.%u: memory.used + memory.reserved exceed memory.total", i);
        return NVML_ERROR_UNKNOWN;
    }
    return NVML_SUCCESS;
}

static nvmlReturn_t memory_v1(nvmlDevice_t device, nvmlMemory_t *out)
{
    struct memory m;
    nvmlReturn_t r = read_memory(device, &m);
    if (r != NVML_SUCCESS)
        return r;
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* v1 counts the driver's reservation as used, like the real library. */
    out->total = m.total;
    out->used = m.used + m.reserved;
    out->free = m.total - out->used;
    return NVML_SUCCESS;
}

static nvmlReturn_t memory_v2(nvmlDevice_t device, nvmlMemory_v2_t *out)
{
    struct memory m;
    nvmlReturn_t r = read_memory(device, &m);
    if (r != NVML_SUCCESS)
        return r;
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (out->version != NVML_MEMORY_V2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    out->total = m.total;
    out->reserved = m.reserved;
    out->used = m.used;
    out->free = m.total - m.used - m.reserved;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    LOCKED(memory_v1(device, memory));
}

API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    LOCKED(memory_v2(device, memory));
}

/* --- temperature, power ------------------------------------------------------------------- */

static nvmlReturn_t temperature(nvmlDevice_t device, int sensor, unsigned int *temp)
{
    if (sensor != 0) { /* only NVML_TEMPERATURE_GPU exists */
        WITH_DEVICE(device, i);
        (void)i;
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    return device_uint(device, "temperature", temp);
}

API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp)
{
    LOCKED(temperature(device, sensorType, temp));
}

typedef struct {
    unsigned int version;
    int sensorType;
    int temperature;
} nvmlTemperature_v1_t;

#define NVML_TEMPERATURE_V1 0x100000Cu

static nvmlReturn_t temperature_v(nvmlDevice_t device, nvmlTemperature_v1_t *t)
{
    WITH_DEVICE(device, i);
    (void)i;
    if (!t)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (t->version != NVML_TEMPERATURE_V1)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    unsigned int v;
    nvmlReturn_t r = temperature(device, t->sensorType, &v);
    if (r == NVML_SUCCESS)
        t->temperature = (int)v;
    return r;
}

API nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *temperature)
{
    LOCKED(temperature_v(device, temperature));
}

static nvmlReturn_t temperature_threshold(nvmlDevice_t device, int threshold, unsigned int *temp)
{
    WITH_DEVICE(device, i);
    if (threshold < 0 || (size_t)threshold >= sizeof(THRESHOLD_KEYS) / sizeof(THRESHOLD_KEYS[0]))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!temp)
        return NVML_ERROR_INVALID_ARGUMENT;
    return get_uint(find_entryf("gpu.%u.temperature.%s", i, THRESHOLD_KEYS[threshold]), temp);
}

API nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, int thresholdType, unsigned int *temp)
{
    LOCKED(temperature_threshold(device, thresholdType, temp));
}

API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    LOCKED(device_uint(device, "power.usage_mw", power));
}

API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    LOCKED(device_uint(device, "power.limit_mw", limit));
}

API nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    LOCKED(device_uint(device, "power.limit_mw", limit));
}

/* --- modes -------------------------------------------------------------------------------- */

static nvmlReturn_t device_enum_out(nvmlDevice_t device, const char *item,
                                    const struct name_value *table, unsigned int *out)
{
    if (!out) {
        WITH_DEVICE(device, i);
        (void)i;
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    long long v;
    nvmlReturn_t r = device_named(device, item, table, &v);
    if (r == NVML_SUCCESS)
        *out = (unsigned int)v;
    return r;
}

API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, unsigned int *mode)
{
    LOCKED(device_enum_out(device, "persistence_mode", BOOL_NAMES, mode));
}

API nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, unsigned int *mode)
{
    LOCKED(device_enum_out(device, "compute_mode", COMPUTE_MODE_NAMES, mode));
}

static nvmlReturn_t virtualization_mode(nvmlDevice_t device, unsigned long long *mode)
{
    unsigned int v;
    nvmlReturn_t r = device_enum_out(device, "virtualization_mode", VIRTUALIZATION_NAMES, &v);
    if (r == NVML_SUCCESS) {
        if (!mode)
            return NVML_ERROR_INVALID_ARGUMENT;
        *mode = v;
    }
    return r;
}

/* nvmlGpuVirtualizationMode_t is an enum; pynvml passes a c_ulonglong, so write 8 bytes. */
API nvmlReturn_t nvmlDeviceGetVirtualizationMode(nvmlDevice_t device, unsigned long long *mode)
{
    LOCKED(virtualization_mode(device, mode));
}

static nvmlReturn_t pair_of_uints(nvmlDevice_t device, const char *item, unsigned int *a, unsigned int *b)
{
    WITH_DEVICE(device, i);
    if (!a || !b)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int v[2];
    nvmlReturn_t r = get_uints(find_entryf("gpu.%u.%s", i, item), v, 2);
    if (r == NVML_SUCCESS) {
        *a = v[0];
        *b = v[1];
    }
    return r;
}

API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode)
{
    LOCKED(pair_of_uints(device, "mig_mode", currentMode, pendingMode));
}

API nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending)
{
    LOCKED(pair_of_uints(device, "ecc.mode", current, pending));
}

/* --- ECC, row remapping, clocks ----------------------------------------------------------- */

static nvmlReturn_t total_ecc(nvmlDevice_t device, int type, int counter, unsigned long long *count)
{
    WITH_DEVICE(device, i);
    if ((type != 0 && type != 1) || (counter != 0 && counter != 1) || !count)
        return NVML_ERROR_INVALID_ARGUMENT;
    return get_ull(find_entryf("gpu.%u.ecc.%s.%s", i, counter ? "aggregate" : "volatile",
                               type ? "uncorrected" : "corrected"), count);
}

API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int errorType, int counterType,
                                              unsigned long long *eccCounts)
{
    LOCKED(total_ecc(device, errorType, counterType, eccCounts));
}

static nvmlReturn_t remapped_rows(nvmlDevice_t device, unsigned int *corr, unsigned int *unc,
                                  unsigned int *pending, unsigned int *failure)
{
    WITH_DEVICE(device, i);
    if (!corr || !unc || !pending || !failure)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int v[4];
    nvmlReturn_t r = get_uints(find_entryf("gpu.%u.remapped_rows", i), v, 4);
    if (r == NVML_SUCCESS) {
        *corr = v[0];
        *unc = v[1];
        *pending = v[2];
        *failure = v[3];
    }
    return r;
}

API nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows,
                                            unsigned int *isPending, unsigned int *failureOccurred)
{
    LOCKED(remapped_rows(device, corrRows, uncRows, isPending, failureOccurred));
}

API nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    LOCKED(device_ull(device, "clocks_event_reasons", reasons));
}

API nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    LOCKED(device_ull(device, "clocks_event_reasons", reasons));
}

API nvmlReturn_t nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    LOCKED(device_ull(device, "clocks_event_reasons_supported", reasons));
}

API nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    LOCKED(device_ull(device, "clocks_event_reasons_supported", reasons));
}

/* --- PCIe link ---------------------------------------------------------------------------- */

API nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen)
{
    LOCKED(device_uint(device, "pcie.gen_current", gen));
}

API nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen)
{
    LOCKED(device_uint(device, "pcie.gen_max", gen));
}

API nvmlReturn_t nvmlDeviceGetGpuMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen)
{
    LOCKED(device_uint(device, "pcie.gen_max", gen));
}

API nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *width)
{
    LOCKED(device_uint(device, "pcie.width_current", width));
}

API nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *width)
{
    LOCKED(device_uint(device, "pcie.width_max", width));
}

API nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t device, unsigned int *value)
{
    LOCKED(device_uint(device, "pcie.replay_counter", value));
}

/* --- NVLink ------------------------------------------------------------------------------- */

static nvmlReturn_t nvlink_state(nvmlDevice_t device, unsigned int link, unsigned int *active)
{
    WITH_DEVICE(device, i);
    unsigned int links;
    nvmlReturn_t r = get_uint(find_entryf("gpu.%u.nvlink.links", i), &links);
    if (r != NVML_SUCCESS)
        return r;
    if (links == 0)
        return NVML_ERROR_NOT_SUPPORTED;
    if (link >= links || !active)
        return NVML_ERROR_INVALID_ARGUMENT;
    long long v;
    r = get_named(find_entryf("gpu.%u.nvlink.%u.state", i, link), BOOL_NAMES, &v);
    if (r == NVML_SUCCESS)
        *active = (unsigned int)v;
    return r;
}

API nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, unsigned int *isActive)
{
    LOCKED(nvlink_state(device, link, isActive));
}

/* --- processes ---------------------------------------------------------------------------- */

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_v2_t; /* also v3 */

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

struct process {
    unsigned int pid;
    unsigned long long used;
};

#define MAX_PROCESSES 64

/* "pid:bytes pid:bytes ..." ("n/a" for unknown memory), or "none". */
static nvmlReturn_t read_processes(unsigned i, const char *item, struct process *procs, unsigned *n)
{
    *n = 0;
    const struct entry *e = find_entryf("gpu.%u.%s", i, item);
    const char *v = NULL;
    nvmlReturn_t r = entry_value(e, &v);
    if (r == NVML_ERROR_NOT_SUPPORTED && !e)
        return NVML_SUCCESS; /* nothing configured: no processes */
    if (r != NVML_SUCCESS)
        return r;
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", v);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        if (strcasecmp(tok, "none") == 0)
            continue;
        if (*n >= MAX_PROCESSES)
            return bad_value(e, "a list of at most 64 processes");
        char *colon = strchr(tok, ':');
        unsigned long long pid, used = VALUE_NOT_AVAILABLE_ULL;
        if (colon)
            *colon = '\0';
        if (parse_ull(tok, &pid) != 0 || pid > UINT_MAX)
            return bad_value(e, "a list of pid:bytes");
        if (colon && strcasecmp(colon + 1, "n/a") != 0 && parse_ull(colon + 1, &used) != 0)
            return bad_value(e, "a list of pid:bytes");
        procs[*n].pid = (unsigned int)pid;
        procs[*n].used = used;
        (*n)++;
    }
    return NVML_SUCCESS;
}

static nvmlReturn_t running_processes(nvmlDevice_t device, const char *item, unsigned int *count,
                                      void *infos, int version)
{
    WITH_DEVICE(device, i);
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    struct process procs[MAX_PROCESSES];
    unsigned n;
    nvmlReturn_t r = read_processes(i, item, procs, &n);
    if (r != NVML_SUCCESS)
        return r;
    if (*count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (n && !infos)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned k = 0; k < n; k++) {
        if (version == 1) {
            nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + k;
            p->pid = procs[k].pid;
            p->usedGpuMemory = procs[k].used;
        } else {
            nvmlProcessInfo_v2_t *p = (nvmlProcessInfo_v2_t *)infos + k;
            p->pid = procs[k].pid;
            p->usedGpuMemory = procs[k].used;
            p->gpuInstanceId = 0xFFFFFFFFu;
            p->computeInstanceId = 0xFFFFFFFFu;
        }
    }
    *count = n;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                          nvmlProcessInfo_v2_t *infos)
{
    LOCKED(running_processes(device, "processes", infoCount, infos, 3));
}

API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount,
                                                          nvmlProcessInfo_v2_t *infos)
{
    LOCKED(running_processes(device, "processes", infoCount, infos, 2));
}

API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *infoCount,
                                                       nvmlProcessInfo_v1_t *infos)
{
    LOCKED(running_processes(device, "processes", infoCount, infos, 1));
}

API nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                           nvmlProcessInfo_v2_t *infos)
{
    LOCKED(running_processes(device, "graphics_processes", infoCount, infos, 3));
}

/* --- P2P and topology --------------------------------------------------------------------- */

/* Pairs are unordered: p2p.2.3.* also answers for (3, 2); the more specific line wins. */
static const struct entry *pair_entry(const char *prefix, unsigned a, unsigned b, const char *suffix)
{
    const struct entry *ab, *ba;
    if (suffix) {
        ab = find_entryf("%s.%u.%u.%s", prefix, a, b, suffix);
        ba = find_entryf("%s.%u.%u.%s", prefix, b, a, suffix);
    } else {
        ab = find_entryf("%s.%u.%u", prefix, a, b);
        ba = find_entryf("%s.%u.%u", prefix, b, a);
    }
    if (!ab)
        return ba;
    if (!ba)
        return ab;
    if (ab->score != ba->score)
        return ab->score > ba->score ? ab : ba;
    return ab > ba ? ab : ba; /* later line wins */
}

static nvmlReturn_t p2p_status(nvmlDevice_t d1, nvmlDevice_t d2, int index, unsigned int *status)
{
    WITH_DEVICE(d1, a);
    WITH_DEVICE(d2, b);
    if (index < 0 || (size_t)index >= sizeof(P2P_INDEX_KEYS) / sizeof(P2P_INDEX_KEYS[0]) || !status)
        return NVML_ERROR_INVALID_ARGUMENT;
    long long v;
    nvmlReturn_t r = get_named(pair_entry("p2p", a, b, P2P_INDEX_KEYS[index]), P2P_STATUS_NAMES, &v);
    if (r == NVML_SUCCESS)
        *status = (unsigned int)v;
    return r;
}

API nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t device1, nvmlDevice_t device2, int p2pIndex,
                                         unsigned int *p2pStatus)
{
    LOCKED(p2p_status(device1, device2, p2pIndex, p2pStatus));
}

static nvmlReturn_t common_ancestor(nvmlDevice_t d1, nvmlDevice_t d2, unsigned int *level)
{
    WITH_DEVICE(d1, a);
    WITH_DEVICE(d2, b);
    if (!level)
        return NVML_ERROR_INVALID_ARGUMENT;
    const struct entry *e = pair_entry("topo", a, b, NULL);
    if (a == b && (!e || e->score < 6)) {
        *level = 0; /* a GPU with itself: NVML_TOPOLOGY_INTERNAL */
        return NVML_SUCCESS;
    }
    long long v;
    nvmlReturn_t r = get_named(e, TOPOLOGY_NAMES, &v);
    if (r == NVML_SUCCESS)
        *level = (unsigned int)v;
    return r;
}

API nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t device1, nvmlDevice_t device2,
                                                      unsigned int *pathInfo)
{
    LOCKED(common_ancestor(device1, device2, pathInfo));
}

/* --- field values ------------------------------------------------------------------------- */

typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    int siVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

#define FAKE_TIMESTAMP_US 1767225600000000LL /* 2026-01-01T00:00:00Z */

static nvmlReturn_t field_values(nvmlDevice_t device, int count, nvmlFieldValue_t *values)
{
    WITH_DEVICE(device, i);
    if (count < 0 || (count > 0 && !values))
        return NVML_ERROR_INVALID_ARGUMENT;
    for (int k = 0; k < count; k++) {
        nvmlFieldValue_t *fv = &values[k];
        unsigned long long v = 0;
        fv->timestamp = FAKE_TIMESTAMP_US;
        fv->latencyUsec = 0;
        memset(&fv->value, 0, sizeof(fv->value));
        fv->nvmlReturn = get_ull(find_entryf("gpu.%u.field.%u", i, fv->fieldId), &v);
        if (fv->nvmlReturn == NVML_SUCCESS) {
            if (v <= UINT_MAX) {
                fv->valueType = 1; /* NVML_VALUE_TYPE_UNSIGNED_INT */
                fv->value.uiVal = (unsigned int)v;
            } else {
                fv->valueType = 3; /* NVML_VALUE_TYPE_UNSIGNED_LONG_LONG */
                fv->value.ullVal = v;
            }
        }
    }
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values)
{
    LOCKED(field_values(device, valuesCount, values));
}
