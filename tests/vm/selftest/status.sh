# A failing script's status comes back out unchanged.
exit 7
