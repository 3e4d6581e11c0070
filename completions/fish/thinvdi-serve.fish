function __thinvdi-serve_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinvdi-serve_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __thinvdi-serve_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __thinvdi-serve_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __thinvdi-serve_parse_tokens -S
    set -l unparsed_tokens (__thinvdi-serve_tokens -pc)
    switch $unparsed_tokens[1]
    case 'thinvdi-serve'
        __thinvdi-serve_parse_subcommand 2 'socket=' 'port=' 'bind=' 'writable' 'tls-certificates=' 'tls-psk=' 'export-name=' 'holder=' 'receive' 'detach' 'pid-file=' 'json' 'v/verbose' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __thinvdi-serve_parse_subcommand -r 1 
        end
    end
end

function __thinvdi-serve_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __thinvdi-serve_parse_subcommand -S -a positional_count
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

function __thinvdi-serve_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __thinvdi-serve_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__thinvdi-serve_tokens -p)
    if test -z "$(__thinvdi-serve_tokens -t)"
        set -l index (count (__thinvdi-serve_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'thinvdi-serve' -f
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_positional "thinvdi-serve" -eq 1' -fka '(__thinvdi-serve_custom_completion ---completion -- positional@0 (count (__thinvdi-serve_tokens -pc)) (__thinvdi-serve_tokens -tC))'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_positional "thinvdi-serve" -eq 2' -fka '(__thinvdi-serve_custom_completion ---completion -- positional@1 (count (__thinvdi-serve_tokens -pc)) (__thinvdi-serve_tokens -tC))'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" socket' -l 'socket' -d 'Listen on this unix socket (it must not exist).' -rF
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" port' -l 'port' -d 'Listen on this TCP port.' -rfka ''
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" bind' -l 'bind' -d 'With --port: the address to listen on (default 127.0.0.1; :: or 0.0.0.0 for all).' -rfka ''
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" writable' -l 'writable' -d 'Serve read-write (refused on a snapshot and on an attached volume).'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" tls-certificates' -l 'tls-certificates' -d 'Require TLS with the X.509 certificates in this directory (nbdkit\'s layout).' -rfa '(__thinvdi-serve_complete_directories)'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" tls-psk' -l 'tls-psk' -d 'Require TLS with this pre-shared key file.' -rF
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" export-name' -l 'export-name' -d 'The NBD export name (default: the volume\'s key).' -rfka ''
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" holder' -l 'holder' -d 'Serve the device attached for this holder (xapi\'s domain), on a socket thinsr names.' -rfka ''
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" receive' -l 'receive' -d 'With --holder: take NBD connections passed by SCM_RIGHTS on the socket (xapi\'s import_activate).'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" detach' -l 'detach' -d 'Run in the background; print the URI and the pid file.'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" pid-file' -l 'pid-file' -d 'Write the server\'s pid here once it accepts connections.' -rF
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" json' -l 'json' -d 'Print the result (or the error) as one JSON value on standard output.'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" v verbose' -s 'v' -l 'verbose' -d 'Print each device-mapper call, LVM command and helper program on stderr, with its time (as THINSR_LOG=debug does).'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_flags_or_options "thinvdi-serve" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'thinvdi-serve' -n '__thinvdi-serve_should_offer_completions_for_positional "thinvdi-serve" -eq 3' -fa 'help' -d 'Show subcommand help information.'