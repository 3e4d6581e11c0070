# A guest out of memory: the OOM killer ends the hog; the script reports it.
python3 -c 'b = []
while True: b.append(bytearray(64 << 20))'
exit $?
