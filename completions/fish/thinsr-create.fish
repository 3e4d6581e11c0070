function __thinsr-create_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinsr-create_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __thinsr-create_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinsr-create_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __thinsr-create_parse_tokens -S
    set -l unparsed_tokens (__thinsr-create_tokens -pc)
    switch $unparsed_tokens[1]
    case 'thinsr-create'
        __thinsr-create_parse_subcommand 0 'uuid=' 'name=' 'description=' 'device=+' 'vg=' 'pool-size=' 'block-size=' 'metadata-size=' 'on-full=' 'json' 'v/verbose' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __thinsr-create_parse_subcommand -r 1 
        end
    end
end

function __thinsr-create_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __thinsr-create_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __thinsr-create_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __thinsr-create_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__thinsr-create_tokens -p)
    if test -z "$(__thinsr-create_tokens -t)"
        set -l index (count (__thinsr-create_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'thinsr-create' -f
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" uuid' -l 'uuid' -d 'The SR\'s uuid (default: a new random uuid).' -rfka ''
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" name' -l 'name' -d 'The SR\'s name label.' -rfka ''
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" description' -l 'description' -d 'The SR\'s description.' -rfka ''
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create"' -l 'device' -d 'A raw block device for the SR to own (repeatable).' -rF
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" vg' -l 'vg' -d 'An existing volume group to create the SR in.' -rfka ''
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" pool-size' -l 'pool-size' -d 'Pool data size, in bytes or with a K, M, G or T suffix (default with --device: half the space left after metadata; the rest stays free for thinsr-monitor to grow the pool into and for preallocated volumes).' -rfka ''
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" block-size' -l 'block-size' -d 'Pool block size, 64K to 1G in multiples of 64K (default 64K).' -rfka ''
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" metadata-size' -l 'metadata-size' -d 'Pool metadata size, 2M to 15G (default: what thin_metadata_size gives for the whole volume group and 1,000 thin devices per GiB).' -rfka ''
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" on-full' -l 'on-full' -d 'What writes do when the pool\'s data is full: queue (wait for thinsr-extend; the kernel fails them after 60 s) or error (fail at once).' -rfka 'queue error'
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" json' -l 'json' -d 'Print the result (or the error) as one JSON value on standard output.'
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" v verbose' -s 'v' -l 'verbose' -d 'Print each device-mapper call, LVM command and helper program on stderr, with its time (as THINSR_LOG=debug does).'
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_flags_or_options "thinsr-create" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'thinsr-create' -n '__thinsr-create_should_offer_completions_for_positional "thinsr-create" -eq 1' -fa 'help' -d 'Show subcommand help information.'