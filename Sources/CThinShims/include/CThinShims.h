#ifndef CTHINSHIMS_H
#define CTHINSHIMS_H

#include <stdint.h>
#include <sqlite3.h>

/// A log sink Swift can implement: libdevmapper's callback is variadic, which
/// Swift cannot provide, so the shim formats the message and forwards it here.
typedef void (*CThinShims_log_sink)(int level, const char *file, int line,
                                    int errno_or_class, const char *message);

/// Routes libdevmapper's log output to `sink` (NULL restores libdm's default).
void CThinShims_dm_log_init(CThinShims_log_sink sink);

/// SQLITE_TRANSIENT is a macro casting -1 to a function pointer; Swift cannot
/// import it, so it is exposed as a function.
sqlite3_destructor_type CThinShims_sqlite_transient(void);

/// O_DIRECT needs _GNU_SOURCE, which Swift's Glibc module is not built with.
int CThinShims_O_DIRECT(void);

/// major()/minor() are macros in <sys/sysmacros.h>.
unsigned int CThinShims_major(unsigned long long device);
unsigned int CThinShims_minor(unsigned long long device);

/// 1 if systemd-udevd answers on its control socket. libdevmapper only checks
/// that the socket file exists, and then waits forever for a udev that died.
int CThinShims_udev_is_running(void);

/// Opens `control`, device-mapper's control node, and arms it for device-mapper events
/// (DM_DEV_ARM_POLL, kernel 4.13+): the returned descriptor polls readable at
/// the next event of any device after this call. Returns -errno on failure.
int CThinShims_dm_arm_events(const char *control);

/// Waits up to `timeout_ms` for the armed descriptor, or for `wake_fd` (a
/// pipe a signal handler writes to; -1 for none) to become readable; 1: an
/// event, 0: the timeout or a wake, -errno otherwise. Closes `descriptor`.
int CThinShims_dm_wait_events(int descriptor, int timeout_ms, int wake_fd);

/// syslog(3) is variadic: the shim logs one preformatted message.
void CThinShims_syslog(int priority, const char *ident, const char *message);

/// Zeroes `length` bytes from `offset` of the block device open as
/// `descriptor` (BLKZEROOUT: the device's write-zeroes offload where it has
/// one, else the kernel writes zero pages); both 512-byte aligned. 0 or -errno.
int CThinShims_zero_range(int descriptor, uint64_t offset, uint64_t length);

/// Discards `length` bytes from `offset` of the block device open as
/// `descriptor` (BLKDISCARD); both 512-byte aligned. 0 or -errno.
int CThinShims_discard_range(int descriptor, uint64_t offset, uint64_t length);

/// Sets the kernel NBD client's I/O timeout of the nbd device open as
/// `descriptor` (NBD_SET_TIMEOUT, in seconds): a request the server has not
/// answered by then fails, and the connection with it. 0 or -errno.
int CThinShims_nbd_set_timeout(int descriptor, unsigned long seconds);

/// The process's arguments as the C library handed them to the program's
/// initialisers: Swift's CommandLine reads /proc/self/cmdline, which a chroot
/// or an early-boot environment may not have mounted.
int CThinShims_argument_count(void);
char *const *CThinShims_arguments(void);

/// A listening unix stream socket bound at `path` (close-on-exec); -errno on failure.
int CThinShims_listen_unix(const char *path);

/// Waits up to `timeout_ms` for a connection on `listening` (or for `wake_fd`
/// to become readable), accepts it and receives one message: its text (NUL
/// terminated, at most `capacity` - 1 bytes) and one descriptor passed by
/// SCM_RIGHTS, stored in `*received`; the connection is then closed.
/// 1: a descriptor; 0: the timeout or a wake; -errno otherwise (-EBADMSG:
/// a message without a descriptor).
int CThinShims_receive_descriptor(int listening, int wake_fd, int timeout_ms, char *message, int capacity,
                                  int *received);

#endif
