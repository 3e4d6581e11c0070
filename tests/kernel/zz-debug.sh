set -u
source tests/kernel/lib.sh
source tests/kernel/common.sh
new_loop D 512
SR=$(thinsr-create --name dbg --device "$D")
echo "SR=$SR"
victim=$(thinvdi-create dbg --name victim --size 8M)
echo "victim=$victim rc=$?"
THINSR_FAULT=after-message thinvdi-destroy dbg "$victim"
echo "destroy rc=$?"
thinsr-attach dbg; echo "attach rc=$?"
thinvdi-create dbg --name settle --size 8M; echo "create rc=$?"
thinvdi-ls dbg
thin_count "$SR"
echo END
