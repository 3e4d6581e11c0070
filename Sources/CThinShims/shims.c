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

#include <linux/nbd.h>

int CThinShims_nbd_set_timeout(int descriptor, unsigned long seconds) {
    return ioctl(descriptor, NBD_SET_TIMEOUT, seconds) == 0 ? 0 : -errno;
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

#include <errno.h>
#include <poll.h>

int CThinShims_listen_unix(const char *path) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address.sun_path)
        return -ENAMETOOLONG;
    strcpy(address.sun_path, path);
    int descriptor = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (descriptor < 0)
        return -errno;
    if (bind(descriptor, (struct sockaddr *)&address, sizeof address) != 0 || listen(descriptor, 8) != 0) {
        int error = errno;
        close(descriptor);
        return -error;
    }
    return descriptor;
}

int CThinShims_receive_descriptor(int listening, int wake_fd, int timeout_ms, char *message, int capacity,
                                  int *received) {
    *received = -1;
    if (capacity > 0)
        message[0] = 0;
    struct pollfd fds[2] = {{.fd = listening, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
    int ready = poll(fds, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (ready < 0)
        return errno == EINTR ? 0 : -errno;
    if (ready == 0 || !(fds[0].revents & POLLIN))
        return 0;
    int connection = accept4(listening, NULL, NULL, SOCK_CLOEXEC);
    if (connection < 0)
        return errno == EINTR || errno == EAGAIN || errno == ECONNABORTED ? 0 : -errno;
    /* One message: a short text (the datapath id) and one descriptor. A
       sender that does not send within 10 s is dropped. */
    struct pollfd in = {.fd = connection, .events = POLLIN};
    if (poll(&in, 1, 10000) <= 0) {
        close(connection);
        return -ETIMEDOUT;
    }
    char text[512];
    struct iovec vector = {.iov_base = text, .iov_len = sizeof text - 1};
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr header;
    memset(&header, 0, sizeof header);
    header.msg_iov = &vector;
    header.msg_iovlen = 1;
    header.msg_control = control.buffer;
    header.msg_controllen = sizeof control.buffer;
    ssize_t length = recvmsg(connection, &header, MSG_CMSG_CLOEXEC);
    int error = errno;
    close(connection);
    if (length < 0)
        return -error;
    for (struct cmsghdr *part = CMSG_FIRSTHDR(&header); part; part = CMSG_NXTHDR(&header, part)) {
        if (part->cmsg_level == SOL_SOCKET && part->cmsg_type == SCM_RIGHTS &&
            part->cmsg_len >= CMSG_LEN(sizeof(int))) {
            memcpy(received, CMSG_DATA(part), sizeof(int));
            /* More than one descriptor: keep the first, close the rest. */
            int count = (int)((part->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int index = 1; index < count; index++) {
                int extra;
                memcpy(&extra, CMSG_DATA(part) + index * sizeof(int), sizeof(int));
                close(extra);
            }
            break;
        }
    }
    if (capacity > 0) {
        int copied = length < capacity - 1 ? (int)length : capacity - 1;
        memcpy(message, text, copied);
        message[copied] = 0;
    }
    if (*received < 0)
        return -EBADMSG;
    /* The server gets a blocking descriptor whatever the sender had. */
    int flags = fcntl(*received, F_GETFL);
    if (flags >= 0)
        fcntl(*received, F_SETFL, flags & ~O_NONBLOCK);
    return 1;
}
