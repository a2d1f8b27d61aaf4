// Set-up failures travel to the engine as one text line on a close-on-exec pipe (docs/SANDBOX.md, "What the
// launcher reports"), because the engine cannot see inside the monitor, init or the worker before it execs:
// the line is its only way to learn which step failed and why.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "csandbox_internal.h"

/// Where failure lines go. Only one thread ever runs in each launcher process, so a plain static suffices.
static int csandbox_status_fd = -1;

void csandbox_set_status_fd(int fd) {
    csandbox_status_fd = fd;
}

static void csandbox_vreport(const char *step, int err, const char *format, va_list arguments) {
    char detail[768];
    int detail_length = vsnprintf(detail, sizeof detail, format, arguments);
    if (detail_length < 0) {
        detail[0] = '\0';
    }
    // The line is the record: a newline inside the detail would split it in two.
    for (char *c = detail; *c != '\0'; c++) {
        if (*c == '\n' || *c == '\r') {
            *c = ' ';
        }
    }
    char line[1024];
    int length = snprintf(line, sizeof line, "error %s %d %s\n", step, err, detail[0] != '\0' ? detail : "-");
    if (length < 0) {
        return;
    }
    if ((size_t)length >= sizeof line) {
        length = (int)sizeof line - 1;
        line[length - 1] = '\n';
    }
    if (csandbox_status_fd >= 0 && csandbox_write_all(csandbox_status_fd, line, (size_t)length) == 0) {
        return;
    }
    // No status pipe yet (a bad command line) or the engine stopped reading it: stderr is the engine's log.
    (void)csandbox_write_all(STDERR_FILENO, "spaces-launcher: ", 17);
    (void)csandbox_write_all(STDERR_FILENO, line, (size_t)length);
}

void csandbox_report(const char *step, int err, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    csandbox_vreport(step, err, format, arguments);
    va_end(arguments);
}

void csandbox_fail(const char *step, int err, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    csandbox_vreport(step, err, format, arguments);
    va_end(arguments);
    _exit(CSANDBOX_EXIT_SETUP_FAILED);
}
