# A hung script: the lab must be killed at its limit, not wait forever.
sleep 100000
