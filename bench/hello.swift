// The start-up floor of a static-stdlib Swift binary that does nothing: the
// benchmark times it beside the tools to separate start-up from work.
print("hello")
