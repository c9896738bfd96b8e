complete -c gradle-version -l dir -d 'Project directory holding the build files' -r -F
complete -c gradle-version -l file -d 'Read this build file instead (build.gradle, build.gradle.kts or gradle.properties)' -r -F
complete -c gradle-version -l default -d 'Print this when no version is declared, instead of exiting 3' -r
complete -c gradle-version -l format -d 'Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines' -r -f -a "text\t'The one value a shell wants, or one human line'
json\t'One JSON object on one line'
env\t'`BG_KEY=value` lines, shell-safe'"
complete -c gradle-version -s v -l verbose -d 'Say more on stderr (-vv for even more)'
complete -c gradle-version -s q -l quiet -d 'Say less on stderr (-qq: errors only)'
complete -c gradle-version -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gradle-version -s V -l version -d 'Print version'
