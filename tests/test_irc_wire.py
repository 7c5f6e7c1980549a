"""
The IRC door's wire format: parsing one line, writing one back.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.irc.wire import IrcMessage, clean, escape_tag, format_tags, line, parse, text_line


class ParseTests(SynchronousTestCase):
    def test_command_and_params(self) -> None:
        """
        A bare command and its middle parameters; the command is upper-cased.
        """
        self.assertEqual(parse("join #a,#b key"), IrcMessage("JOIN", ["#a,#b", "key"]))
        self.assertEqual(parse("QUIT"), IrcMessage("QUIT", []))

    def test_trailing(self) -> None:
        """
        The parameter after C{" :"} runs to the end of the line, spaces and
        colons included; an empty one is still a parameter.
        """
        self.assertEqual(
            parse("PRIVMSG #room :hello there :) x"),
            IrcMessage("PRIVMSG", ["#room", "hello there :) x"]),
        )
        self.assertEqual(parse("PRIVMSG #room :"), IrcMessage("PRIVMSG", ["#room", ""]))
        self.assertEqual(parse("AWAY :"), IrcMessage("AWAY", [""]))
        self.assertEqual(parse("PING :a b"), IrcMessage("PING", ["a b"]))
        self.assertEqual(parse("TOPIC #r ::colon"), IrcMessage("TOPIC", ["#r", ":colon"]))

    def test_source(self) -> None:
        """
        A leading C{:source} is kept apart from the command.
        """
        message = parse(":nick!user@host PRIVMSG #room :hi")
        self.assertEqual(message, IrcMessage("PRIVMSG", ["#room", "hi"], {}, "nick!user@host"))

    def test_multiple_spaces(self) -> None:
        """
        Runs of spaces (leading, between tags, source, command and
        parameters) count as one; those inside the trailing one stay.
        """
        self.assertEqual(
            parse("  @a=1   :src   PRIVMSG    #room    x   :  two  spaces "),
            IrcMessage("PRIVMSG", ["#room", "x", "  two  spaces "], {"a": "1"}, "src"),
        )

    def test_tags_with_escapes(self) -> None:
        """
        Tag values are unescaped (C{\\:} C{\\s} C{\\\\} C{\\r} C{\\n}); an
        unknown escape is the character itself, a lone trailing backslash
        is dropped; a key without a value has the empty value; empty items
        are skipped.
        """
        message = parse(
            r"@a=one\:two\sthree\\four\r\n;flag;+vendor/x=\q;;end=tail\ :s!u@h TAGMSG #r"
        )
        assert message is not None
        self.assertEqual(
            message.tags,
            {
                "a": "one;two three\\four\r\n",
                "flag": "",
                "+vendor/x": "q",
                "end": "tail",
            },
        )
        self.assertEqual(
            (message.source, message.command, message.params), ("s!u@h", "TAGMSG", ["#r"])
        )

    def test_no_command(self) -> None:
        """
        A line with no command (empty, spaces, tags or a source alone) is
        C{None}.
        """
        for text in (
            "",
            "   ",
            "@a=1",
            "@a=1 ",
            ":source",
            ":source   ",
            "@a=1 :src",
            ":only :trailing",
        ):
            self.assertIsNone(parse(text), text)


class FormatTests(SynchronousTestCase):
    def test_line(self) -> None:
        """
        L{line} writes the last parameter after C{:} only when it must be
        (empty, with a space, or starting with a colon), and ends in CR LF.
        """
        self.assertEqual(
            line("srv", "001", "nick", "Welcome here"), ":srv 001 nick :Welcome here\r\n"
        )
        self.assertEqual(line("srv", "MODE", "#r", "+o", "bob"), ":srv MODE #r +o bob\r\n")
        self.assertEqual(line("srv", "PONG", "srv", ""), ":srv PONG srv :\r\n")
        self.assertEqual(line("srv", "PONG", "srv", ":x"), ":srv PONG srv ::x\r\n")
        self.assertEqual(line(None, "PING", "token"), "PING token\r\n")
        self.assertEqual(line("srv", "LUSERS"), ":srv LUSERS\r\n")

    def test_text_line(self) -> None:
        """
        L{text_line} always writes the last parameter as trailing text.
        """
        self.assertEqual(text_line("a!b@c", "PRIVMSG", "#r", "hi"), ":a!b@c PRIVMSG #r :hi\r\n")
        self.assertEqual(text_line(None, "ERROR", "Closing link"), "ERROR :Closing link\r\n")
        self.assertEqual(text_line("srv", "433", "*", "bob", ""), ":srv 433 * bob :\r\n")

    def test_lines_parse_back(self) -> None:
        """
        What L{line} and L{text_line} write parses back to what was given.
        """
        for params in (["#r", "hello world"], ["#r", ""], ["#r", ":)"], ["x"], ["#r", "+o", "n"]):
            for write in (line, text_line):
                message = parse(write("src", "CMD", *params).rstrip("\r\n"))
                self.assertEqual(message, IrcMessage("CMD", params, {}, "src"))

    def test_format_tags(self) -> None:
        """
        C{@key=value;key } with values escaped; a key with an empty value
        alone; nothing at all for no tags.
        """
        self.assertEqual(format_tags({}), "")
        self.assertEqual(format_tags({"a": "1", "b": ""}), "@a=1;b ")
        self.assertEqual(escape_tag("a;b c\\d\r\ne"), r"a\:b\sc\\d\r\ne")

    def test_tags_round_trip(self) -> None:
        """
        Tags written by L{format_tags} parse back to the same values.
        """
        tags = {
            "time": "2023-11-14T22:13:20.250Z",
            "account": "alice",
            "+odd": "semi;colon space\\back\rcr\nlf",
            "empty": "",
            "+trailing-backslash": "x\\",
        }
        message = parse(format_tags(tags) + ":s PRIVMSG #r :hi")
        assert message is not None
        self.assertEqual(message.tags, tags)
        self.assertEqual(message.params, ["#r", "hi"])

    def test_clean(self) -> None:
        """
        L{clean} takes out what would end or break a line.
        """
        self.assertEqual(clean("a\r\nb\0c"), "a  bc")
        self.assertEqual(clean("fine"), "fine")
