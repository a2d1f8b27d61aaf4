// The space launcher: the single-threaded C program that turns the engine's request for a space into a Bun
// worker running inside new namespaces. It is C, and a separate executable, because the engine is a
// multithreaded Swift process and may not run anything but async-signal-safe code between fork and exec;
// see docs/SANDBOX.md for the contract this implements.
#ifndef CSANDBOX_H
#define CSANDBOX_H

#ifdef __cplusplus
extern "C" {
#endif

/// Runs `spaces-launcher` with its command line (docs/SANDBOX.md, "The launcher's command line").
///
/// Returns only as the monitor's exit status: init's exit status, 128 + signal when init was killed,
/// or 127 when setting the space up failed (after writing `error <step> <errno> <detail>` to the status fd).
int csandbox_launcher_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
