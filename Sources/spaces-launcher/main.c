// The `spaces-launcher` executable: everything lives in the CSandbox library so that it can be read, and
// later tested, as one unit; this file only gives it a process entry point.
#include "csandbox.h"

int main(int argc, char **argv) {
    return csandbox_launcher_main(argc, argv);
}
