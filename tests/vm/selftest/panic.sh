# A guest kernel that dies: the lab must end non-zero, never pass.
echo c > /proc/sysrq-trigger
sleep 60
