function __thinvdi-import_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinvdi-import_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __thinvdi-import_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinvdi-import_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __thinvdi-import_parse_tokens -S
    set -l unparsed_tokens (__thinvdi-import_tokens -pc)
    switch $unparsed_tokens[1]
    case 'thinvdi-import'
        __thinvdi-import_parse_subcommand 2 'name=' 'format=' 'backing=+' 'size=' 'description=' 'preallocate' 'progress=' 'json' 'v/verbose' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __thinvdi-import_parse_subcommand -r 1 
        end
    end
end

function __thinvdi-import_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __thinvdi-import_parse_subcommand -S -a positional_count
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

function __thinvdi-import_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __thinvdi-import_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__thinvdi-import_tokens -p)
    if test -z "$(__thinvdi-import_tokens -t)"
        set -l index (count (__thinvdi-import_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'thinvdi-import' -f
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_positional "thinvdi-import" -eq 1' -fka '(__thinvdi-import_custom_completion ---completion -- positional@0 (count (__thinvdi-import_tokens -pc)) (__thinvdi-import_tokens -tC))'
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" name' -l 'name' -d 'The new volume\'s name label.' -rfka ''
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_positional "thinvdi-import" -eq 2' -F
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" format' -l 'format' -d 'The image\'s format (default: read from its header).' -rfka 'raw qcow2 vpc vmdk vhdx'
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import"' -l 'backing' -d 'A backing image of FILE\'s chain, in order (repeat for each); without it an image naming a backing image is refused.' -rF
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" size' -l 'size' -d 'The volume\'s size (at least the image\'s; for -, the stream\'s exact length).' -rfka ''
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" description' -l 'description' -d 'The new volume\'s description.' -rfka ''
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" preallocate' -l 'preallocate' -d 'Import into a preallocated raw volume (a linear LV beside the pool, zeroed first) instead of a thin one.'
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" progress' -l 'progress' -d 'Progress on stderr: bar, json or none (a bare --progress: bar; default: a bar on a terminal).' -rfka 'bar json none'
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" json' -l 'json' -d 'Print the result (or the error) as one JSON value on standard output.'
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" v verbose' -s 'v' -l 'verbose' -d 'Print each device-mapper call, LVM command and helper program on stderr, with its time (as THINSR_LOG=debug does).'
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_flags_or_options "thinvdi-import" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'thinvdi-import' -n '__thinvdi-import_should_offer_completions_for_positional "thinvdi-import" -eq 3' -fa 'help' -d 'Show subcommand help information.'