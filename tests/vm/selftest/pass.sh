# The lab runs a script against a real device-mapper and returns its status.
set -e
grep -qw thin-pool <(dmsetup targets)
[ "$(id -u)" = 0 ]
echo "lab selftest: dm-thin present in $THINSR_LAB_KIND lab, kernel $(uname -r)"
exit 0
