function __thinvdi-mirror_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinvdi-mirror_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __thinvdi-mirror_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinvdi-mirror_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __thinvdi-mirror_parse_tokens -S
    set -l unparsed_tokens (__thinvdi-mirror_tokens -pc)
    switch $unparsed_tokens[1]
    case 'thinvdi-mirror'
        __thinvdi-mirror_parse_subcommand 3 'domain=' 'full' 'background' 'connect-timeout=' 'remote-timeout=' 'progress=' 'json' 'v/verbose' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __thinvdi-mirror_parse_subcommand -r 1 
        end
    end
end

function __thinvdi-mirror_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __thinvdi-mirror_parse_subcommand -S -a positional_count
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

function __thinvdi-mirror_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __thinvdi-mirror_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__thinvdi-mirror_tokens -p)
    if test -z "$(__thinvdi-mirror_tokens -t)"
        set -l index (count (__thinvdi-mirror_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'thinvdi-mirror' -f
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_positional "thinvdi-mirror" -eq 1' -fka '(__thinvdi-mirror_custom_completion ---completion -- positional@0 (count (__thinvdi-mirror_tokens -pc)) (__thinvdi-mirror_tokens -tC))'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_positional "thinvdi-mirror" -eq 2' -fka '(__thinvdi-mirror_custom_completion ---completion -- positional@1 (count (__thinvdi-mirror_tokens -pc)) (__thinvdi-mirror_tokens -tC))'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" domain' -l 'domain' -d 'End the mirror at the detach of this holder (xapi\'s domain) instead of the volume\'s.' -rfka ''
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" full' -l 'full' -d 'Copy every region, not only those holding data (a remote that may not read zeros).'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" background' -l 'background' -d 'Return once the mirror runs; print its operation (attached volumes only).'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" connect-timeout' -l 'connect-timeout' -d 'Seconds to wait for the remote\'s socket to appear and answer (default 30).' -rfka ''
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" remote-timeout' -l 'remote-timeout' -d 'Seconds the remote may leave a request unanswered before the mirror fails (the guest\'s writes go on here; default 15).' -rfka ''
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" progress' -l 'progress' -d 'Progress on stderr: bar, json or none (a bare --progress: bar; default: a bar on a terminal).' -rfka 'bar json none'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" json' -l 'json' -d 'Print the result (or the error) as one JSON value on standard output.'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" v verbose' -s 'v' -l 'verbose' -d 'Print each device-mapper call, LVM command and helper program on stderr, with its time (as THINSR_LOG=debug does).'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_flags_or_options "thinvdi-mirror" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'thinvdi-mirror' -n '__thinvdi-mirror_should_offer_completions_for_positional "thinvdi-mirror" -eq 3' -fa 'help' -d 'Show subcommand help information.'