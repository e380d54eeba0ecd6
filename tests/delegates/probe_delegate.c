/*
 * A minimal TFLite external delegate for the test suite: it claims no nodes (so the
 * interpreter's CPU kernels run everything), records each Prepare in a marker file and
 * fails on request, the two things the tests must observe from outside.
 *
 * Options (key/value strings, as TFLite's external delegate interface passes them):
 *   marker  path of a file; one line "prepared" is appended per Prepare call
 *   fail       "create": tflite_plugin_create_delegate returns NULL after report_error(message)
 *              "prepare": Prepare returns kTfLiteError (the interpreter refuses the delegate)
 *   fail_while path of a file; create fails as with fail=create while that file exists (an
 *              accelerator that comes back when the test removes the file)
 *   message    the error text reported on failure (default "probe delegate failed on request")
 *
 * Build: cc -shared -fPIC -o libprobe_delegate.so probe_delegate.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The public C ABI (tensorflow/lite/core/c/common.h): TfLiteDelegate in full, and only the
 * first two members of TfLiteContext, which have not moved since TFLite 1.x. */
typedef int TfLiteStatus; /* kTfLiteOk = 0, kTfLiteError = 1 */
typedef struct {
    int size;
    int data[];
} TfLiteIntArray;
typedef struct TfLiteContext {
    size_t tensors_size;
    TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext *context, TfLiteIntArray **plan);
    /* ... more members this delegate does not use ... */
} TfLiteContext;
typedef struct TfLiteDelegate {
    void *data_;
    TfLiteStatus (*Prepare)(TfLiteContext *context, struct TfLiteDelegate *delegate);
    TfLiteStatus (*CopyFromBufferHandle)(void *context, struct TfLiteDelegate *delegate,
                                         int buffer_handle, void *tensor);
    TfLiteStatus (*CopyToBufferHandle)(void *context, struct TfLiteDelegate *delegate,
                                       int buffer_handle, void *tensor);
    void (*FreeBufferHandle)(void *context, struct TfLiteDelegate *delegate, int *handle);
    int64_t flags;
    void *opaque_delegate_builder;
} TfLiteDelegate;

typedef struct {
    char marker[4096];
    int fail_prepare;
} ProbeState;

static TfLiteStatus probe_prepare(TfLiteContext *context, TfLiteDelegate *delegate) {
    ProbeState *state = (ProbeState *)delegate->data_;
    TfLiteIntArray *plan = NULL;
    int nodes = context->GetExecutionPlan(context, &plan) == 0 && plan != NULL ? plan->size : -1;
    if (state->marker[0] != '\0') {
        FILE *marker = fopen(state->marker, "a");
        if (marker != NULL) {
            fprintf(marker, "prepared %d\n", nodes);
            fclose(marker);
        }
    }
    return state->fail_prepare ? 1 : 0;
}

TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t count,
                                              void (*report_error)(const char *)) {
    const char *marker = "", *fail = "", *fail_while = "";
    const char *message = "probe delegate failed on request";
    /* Python's ctypes passes the count as a C int: keep only its low 32 bits. */
    size_t n = (uint32_t)count;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i], "marker") == 0) marker = values[i];
        else if (strcmp(keys[i], "fail") == 0) fail = values[i];
        else if (strcmp(keys[i], "fail_while") == 0) fail_while = values[i];
        else if (strcmp(keys[i], "message") == 0) message = values[i];
        else {
            if (report_error != NULL) report_error("probe delegate: unknown option");
            return NULL;
        }
    }
    if (strcmp(fail, "create") == 0 || (fail_while[0] != '\0' && access(fail_while, F_OK) == 0)) {
        if (report_error != NULL) report_error(message);
        return NULL;
    }
    TfLiteDelegate *delegate = calloc(1, sizeof(TfLiteDelegate));
    ProbeState *state = calloc(1, sizeof(ProbeState));
    if (delegate == NULL || state == NULL) {
        free(delegate);
        free(state);
        return NULL;
    }
    snprintf(state->marker, sizeof state->marker, "%s", marker);
    state->fail_prepare = strcmp(fail, "prepare") == 0;
    delegate->data_ = state;
    delegate->Prepare = probe_prepare;
    return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate *delegate) {
    if (delegate == NULL) return;
    free(delegate->data_);
    free(delegate);
}
