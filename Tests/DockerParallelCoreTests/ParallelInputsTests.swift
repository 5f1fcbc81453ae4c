import DockerParallelCore
import Testing

/// How inputs become commands, as GNU parallel 20221122 makes them (each expectation was read
/// off it; `GNUParallelComparisonTests` checks the same against the real program where it is
/// installed).
struct ParallelInputsTests {
    @Test func sourcesCombineFirstSlowestAndLinkedOnesPair() throws {
        let layout = ArgumentLayout()
        #expect(try layout.arguments(of: [InputSource(["a", "b"]), InputSource(["1", "2"])])
            == [["a", "1"], ["a", "2"], ["b", "1"], ["b", "2"]])
        // `:::+` pairs up to the shorter source.
        #expect(try layout.arguments(of: [InputSource(["a", "b", "c"]), InputSource(["1", "2"], linked: true)])
            == [["a", "1"], ["b", "2"]])
        #expect(try layout.arguments(of: [InputSource(["a", "b"]), InputSource(["1", "2"], linked: true), InputSource(["x", "y"])])
            == [["a", "1", "x"], ["a", "1", "y"], ["b", "2", "x"], ["b", "2", "y"]])
        #expect(try layout.arguments(of: [InputSource([]), InputSource(["1"])]) == [])
    }

    @Test func columnsTrimAndGroups() throws {
        #expect(try ArgumentLayout(columnSeparator: ",").arguments(of: [InputSource(["a,b", "c"]), InputSource(["1,2"])])
            == [["a", "b", "1", "2"], ["c", "1", "2"]])
        #expect(try ArgumentLayout(columnSeparator: ",+").arguments(of: [InputSource(["a,,b"])]) == [["a", "b"]])
        #expect(try ArgumentLayout(columnSeparator: ",", trim: .both).arguments(of: [InputSource(["  a  ,b "])]) == [["a", "b"]])
        #expect(try ArgumentLayout(trim: .left).arguments(of: [InputSource([" \ta "])]) == [["a "]])
        #expect(try ArgumentLayout(trim: .both).arguments(of: [InputSource(["a\r"])]) == [["a"]])
        #expect(try ArgumentLayout(recordsPerCommand: 2).arguments(of: [InputSource(["1", "2", "3", "4", "5"])])
            == [["1", "2"], ["3", "4"], ["5"]])
        #expect(try ArgumentLayout(recordsPerCommand: 2).arguments(of: [InputSource(["a", "b"]), InputSource(["1"])])
            == [["a", "1", "b", "1"]])
        #expect(try ArgumentLayout(recordsPerCommand: 0).arguments(of: [InputSource(["a", "b"])]) == [[], []])
        #expect(throws: DockerParallelError.self) { try ArgumentLayout(columnSeparator: "(").arguments(of: [InputSource(["a"])]) }
    }

    @Test func recordsOfAFile() {
        #expect(InputSource.records(of: "a\n\nb\n") == ["a", "", "b"])
        #expect(InputSource.records(of: "a\nb") == ["a", "b"])
        #expect(InputSource.records(of: "") == [])
        #expect(InputSource.records(of: "a b\0c\nd\0", separator: "\0") == ["a b", "c\nd"])
        // CRLF: the line feed ends each record, whose carriage return stays (as in GNU parallel).
        #expect(InputSource.records(of: "a\r\nb\r\n") == ["a\r", "b\r"])
    }

    @Test func valuesAreQuotedAsGNUParallelQuotesThem() {
        let cases = [
            "abc": "abc", "A-Z.9": "A-Z.9", "a/b": "a/b", "a+b": "a+b", "a_b": "a_b", "": "''", "a b": "'a b'",
            "it's": "'it'\"'\"'s'", "'a": "\"'\"'a'", "a'": "'a'\"'\"", "x$y": "'x$y'", "a=b": "'a=b'", "é": "'é'",
        ]
        for (value, quoted) in cases {
            #expect(ShellCommandLine.quote(value) == quoted, "\(value)")
        }
    }

    @Test func replacementStrings() throws {
        let command = try ShellCommandLine(["echo", "{} {.} {/} {//} {/.} {#}"])
        #expect(command.commandLine(arguments: ["dir/sub/file.tar.gz"], number: 1) == "echo dir/sub/file.tar.gz dir/sub/file.tar file.tar.gz dir/sub file.tar 1")
        #expect(command.commandLine(arguments: [".hidden"], number: 4) == "echo .hidden '' .hidden . '' 4")
        #expect(command.commandLine(arguments: ["dir.d/f"], number: 5) == "echo dir.d/f dir.d/f f dir.d f 5")
        #expect(command.commandLine(arguments: ["/x.y"], number: 2) == "echo /x.y /x x.y / x 2")
        let positional = try ShellCommandLine(["echo", "{1} {1.} {1/} {1//} {1/.} {2} {-1} {-2} [{5}]"])
        #expect(positional.commandLine(arguments: ["d/a.txt", "e/b.c"], number: 1) == "echo d/a.txt d/a a.txt d a e/b.c e/b.c d/a.txt []")
        // A missing one is nothing, not an empty argument.
        #expect(try ShellCommandLine(["echo", "{1}", "{2}"]).commandLine(arguments: ["c"], number: 3) == "echo c ")
        // {//} is Perl's dirname.
        let folders = try ShellCommandLine(["{//}"], quoted: true)
        for (path, folder) in ["a/b/": "a", "a//b": "a", "/a/": "/", "/": "/", "a": ".", "/x.y": "/", "d/e/f": "d/e"] {
            #expect(folders.argv(arguments: [path], number: 1) == [folder], "\(path)")
        }
        // Not replacement strings: left as they are.
        let literal = try ShellCommandLine(["echo", "{x} {-0} {-} {1x} { } {"])
        #expect(!literal.usesReplacementStrings)
        #expect(literal.commandLine(arguments: ["a"], number: 1) == "echo {x} {-0} {-} {1x} { } { a")
        // {0} is {}, as in GNU parallel.
        #expect(try ShellCommandLine(["echo", "{0}"]).commandLine(arguments: ["a b"], number: 1) == "echo 'a b'")
    }

    @Test func shellLinesAndQuotedCommands() throws {
        let appended = try ShellCommandLine(["echo hi;"])
        #expect(appended.commandLine(arguments: ["a b", "c"], number: 1) == "echo hi; 'a b' c")
        #expect(appended.argv(arguments: ["a b"], number: 1) == ["/bin/sh", "-c", "echo hi; 'a b'"])
        let all = try ShellCommandLine(["echo", "{}", "{.}"])
        #expect(all.commandLine(arguments: ["a b", "c.d"], number: 1) == "echo 'a b' c.d 'a b' c")
        // -q: each word is one argument, the input put in as it is, shown quoted.
        let quoted = try ShellCommandLine(["sh", "-c", "echo [{}]"], quoted: true)
        #expect(quoted.argv(arguments: ["a;echo b"], number: 1) == ["sh", "-c", "echo [a;echo b]"])
        #expect(quoted.commandLine(arguments: ["a;echo b"], number: 1) == "sh -c 'echo [a;echo b]'")
        let quotedAppended = try ShellCommandLine(["printf", "%s\n"], quoted: true)
        #expect(quotedAppended.argv(arguments: ["x y"], number: 1) == ["printf", "%s\n", "x y"])
        // -q: {} of several inputs is one argument each, as the shell splits GNU parallel's line.
        let several = try ShellCommandLine(["echo", "x{}y"], quoted: true)
        #expect(several.argv(arguments: ["a b", "c"], number: 1) == ["echo", "xa b", "cy"])
        #expect(several.commandLine(arguments: ["a b", "c"], number: 1) == "echo 'xa b' cy")
        // No words: the inputs are the commands.
        let inputs = try ShellCommandLine([])
        #expect(inputs.argv(arguments: ["echo a;", "echo b"], number: 1) == ["/bin/sh", "-c", "echo a; echo b"])
        #expect(throws: DockerParallelError.self) { try ShellCommandLine(["", "x"]) }
    }
}

/// `--halt` as GNU parallel 20221122 reads it and the exit status it then gives.
struct HaltPolicyTests {
    @Test func spellings() throws {
        #expect(try HaltPolicy.parse("now,fail=1") == HaltPolicy(when: .now, event: .fail, limit: .count(1)))
        #expect(try HaltPolicy.parse("soon,fail=20%") == HaltPolicy(when: .soon, event: .fail, limit: .percent(20)))
        #expect(try HaltPolicy.parse("now,success=2") == HaltPolicy(when: .now, event: .success, limit: .count(2)))
        #expect(try HaltPolicy.parse("2") == HaltPolicy(when: .now, event: .fail, limit: .count(1)))
        #expect(try HaltPolicy.parse("1") == HaltPolicy(when: .soon, event: .fail, limit: .count(1)))
        #expect(try HaltPolicy.parse("-1") == HaltPolicy(when: .soon, event: .success, limit: .count(1)))
        #expect(try HaltPolicy.parse("-2") == HaltPolicy(when: .now, event: .success, limit: .count(1)))
        #expect(try HaltPolicy.parse("5%") == HaltPolicy(when: .soon, event: .fail, limit: .percent(5)))
        #expect(try HaltPolicy.parse("never") == nil)
        for bad in ["later,fail=1", "now,fail", "now,fail=0", "now,fail=x", "now,oops=1", "now,fail=150%", ""] {
            #expect(throws: DockerParallelError.self, "\(bad)") { try HaltPolicy.parse(bad) }
        }
    }

    @Test func exitStatuses() throws {
        let first = try #require(try HaltPolicy.parse("now,fail=1"))
        #expect(first.exitStatus(failed: 1, finished: 2, total: 4, lastFailed: true, lastExitStatus: 3) == 3)
        #expect(first.exitStatus(failed: 0, finished: 1, total: 4, lastFailed: false, lastExitStatus: 0) == nil)
        let two = try #require(try HaltPolicy.parse("soon,fail=2"))
        #expect(two.exitStatus(failed: 1, finished: 2, total: 6, lastFailed: true, lastExitStatus: 3) == nil)
        #expect(two.exitStatus(failed: 2, finished: 4, total: 6, lastFailed: true, lastExitStatus: 4) == 2)
        // A share: the failures' share of all commands, in percent, rounded up.
        let share = try #require(try HaltPolicy.parse("soon,fail=34%"))
        #expect(share.exitStatus(failed: 2, finished: 4, total: 6, lastFailed: true, lastExitStatus: 4) == nil)
        #expect(share.exitStatus(failed: 3, finished: 5, total: 6, lastFailed: true, lastExitStatus: 5) == 50)
        let success = try #require(try HaltPolicy.parse("now,success=1"))
        #expect(success.exitStatus(failed: 1, finished: 1, total: 3, lastFailed: true, lastExitStatus: 3) == nil)
        #expect(success.exitStatus(failed: 1, finished: 2, total: 3, lastFailed: false, lastExitStatus: 0) == 0)
        // Without halting, a share's exit status is still the failures' share.
        #expect(share.statusWithoutHalting(failed: 1, total: 10) == 10)
        #expect(first.statusWithoutHalting(failed: 1, total: 10) == nil)
        let done = try #require(try HaltPolicy.parse("now,done=2"))
        #expect(done.exitStatus(failed: 0, finished: 2, total: 4, lastFailed: false, lastExitStatus: 0) == 0)
    }
}
