#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <string.h>
#include <unistd.h>
#include "CThinShims.h"
#include <libdevmapper.h>
#include <stdarg.h>
#include <stdio.h>

static CThinShims_log_sink current_sink;

static void trampoline(int level, const char *file, int line, int errno_or_class,
                       const char *format, ...) {
    char message[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    if (current_sink)
        current_sink(level, file, line, errno_or_class, message);
}

void CThinShims_dm_log_init(CThinShims_log_sink sink) {
    current_sink = sink;
    dm_log_with_errno_init(sink ? trampoline : NULL);
}

sqlite3_destructor_type CThinShims_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}

int CThinShims_O_DIRECT(void) { return O_DIRECT; }
unsigned int CThinShims_major(unsigned long long device) { return major(device); }
unsigned int CThinShims_minor(unsigned long long device) { return minor(device); }

int CThinShims_udev_is_running(void) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, "/run/udev/control", sizeof address.sun_path - 1);
    int running = connect(fd, (struct sockaddr *)&address, sizeof address) == 0;
    close(fd);
    return running;
}

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <syslog.h>
#include <unistd.h>
#include <linux/dm-ioctl.h>
#include <linux/fs.h>

int CThinShims_dm_arm_events(const char *control) {
    int descriptor = open(control, O_RDWR | O_CLOEXEC);
    if (descriptor < 0) return -errno;
    struct dm_ioctl request;
    memset(&request, 0, sizeof request);
    request.version[0] = DM_VERSION_MAJOR;
    request.version[1] = 37;   /* DM_DEV_ARM_POLL appeared in 4.37 */
    request.data_size = sizeof request;
    if (ioctl(descriptor, DM_DEV_ARM_POLL, &request) < 0) {
        int error = errno;
        close(descriptor);
        return -error;
    }
    return descriptor;
}

int CThinShims_dm_wait_events(int descriptor, int timeout_ms, int wake_fd) {
    struct pollfd entries[2] = {
        { .fd = descriptor, .events = POLLIN, .revents = 0 },
        { .fd = wake_fd, .events = POLLIN, .revents = 0 },
    };
    int result = poll(entries, wake_fd >= 0 ? 2 : 1, timeout_ms);
    int error = errno;
    close(descriptor);
    if (result < 0) return -error;
    return (entries[0].revents & POLLIN) ? 1 : 0;
}

void CThinShims_syslog(int priority, const char *ident, const char *message) {
    /* openlog keeps the pointer: give it storage that outlives the call. */
    static char saved[64];
    strncpy(saved, ident, sizeof saved - 1);
    openlog(saved, LOG_PID, LOG_DAEMON);
    syslog(priority, "%s", message);
}

int CThinShims_zero_range(int descriptor, uint64_t offset, uint64_t length) {
    uint64_t range[2] = {offset, length};
    return ioctl(descriptor, BLKZEROOUT, range) == 0 ? 0 : -errno;
}

int CThinShims_discard_range(int descriptor, uint64_t offset, uint64_t length) {
    uint64_t range[2] = {offset, length};
    return ioctl(descriptor, BLKDISCARD, range) == 0 ? 0 : -errno;
}

/* glibc calls the main program's .init_array entries with argc, argv and envp. */
static int captured_argument_count;
static char *const *captured_arguments;
static void capture_arguments(int count, char **arguments, char **environment) {
    (void)environment;
    captured_argument_count = count;
    captured_arguments = arguments;
}
__attribute__((section(".init_array"), used))
static void (*const capture_arguments_entry)(int, char **, char **) = capture_arguments;

int CThinShims_argument_count(void) { return captured_argument_count; }
char *const *CThinShims_arguments(void) { return captured_arguments; }
