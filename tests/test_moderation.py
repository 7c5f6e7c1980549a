"""
Room ownership and moderation in the hub: operators, voices, kicks, bans,
modes, invitations, server operators, and what of it survives a restart.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.errors import ChatError
from chatd.hub import Hub, User
from chatd.model import (
    BanChanged,
    Error,
    Invited,
    Joined,
    Kicked,
    Message,
    ModeChanged,
    Modes,
    Notice,
    OpChanged,
    RoomInfo,
    RoomList,
    RoomRecord,
    Topic,
    TopicChanged,
    UserList,
    VoiceChanged,
    Welcome,
    parse_limit,
)
from chatd.store.memory import MemoryStore
from chatd.testing import RecordingClient, events, make_hub, register, signed_on


def account(hub: Hub, nick: str) -> User:
    """
    Sign on C{nick} as the holder of a (new) account of that name.
    """
    user = signed_on(hub, nick)
    done: list[object] = []
    register(hub, user, "pass-" + nick).addBoth(done.append)
    assert done == [None], done
    events(user)
    return user


class Case(SynchronousTestCase):
    """
    A registered room C{#den} owned by alice, with bob (an account) and
    carol (a guest) in it, everyone's events so far forgotten.
    """

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.hub = make_hub(self.clock, store=self.store, admins=["root"])
        self.alice = account(self.hub, "alice")
        self.bob = account(self.hub, "bob")
        self.carol = signed_on(self.hub, "carol")
        for user in (self.alice, self.bob, self.carol):
            self.hub.join(user, "#den")
        for user in (self.alice, self.bob, self.carol):
            events(user)

    def refused(self, code: str, request: object, *args: object) -> None:
        error = self.assertRaises(ChatError, request, *args)
        self.assertEqual(error.code, code)

    def everyone(self, *users: User) -> list[list[object]]:
        return [events(u) for u in users or (self.alice, self.bob, self.carol)]

    def outsider(self, nick: str) -> User:
        """
        Sign on C{nick}, in the lobby only, and forget everyone's events.
        """
        user = signed_on(self.hub, nick)
        self.everyone(user, self.alice, self.bob, self.carol)
        return user


class OwnershipTests(Case):
    def test_first_registered_joiner_owns(self) -> None:
        """
        The first identified user to enter a room owns it; C{who} marks
        the owner as an operator.
        """
        self.assertEqual(self.hub.registered["#den"].owner, "alice")
        self.hub.who(self.carol, "#den")
        self.assertEqual(
            events(self.carol), [UserList("#den", ("alice", "bob", "carol"), ("alice",))]
        )

    def test_guest_creator_is_operator_only_while_there(self) -> None:
        """
        A guest who opens a room is its operator (and may kick), but the
        room is not registered; once it empties, the next identified user
        to open it owns it.
        """
        self.hub.join(self.carol, "#tmp")
        self.hub.join(self.bob, "#tmp")
        events(self.bob)
        self.hub.kick(self.carol, "#tmp", "bob")
        self.assertNotIn("#tmp", self.hub.registered)
        self.hub.part(self.carol, "#tmp")
        self.hub.join(self.bob, "#tmp")
        self.assertEqual(self.hub.registered["#tmp"].owner, "bob")

    def test_settings_survive_restart(self) -> None:
        """
        A registered room keeps its topic, modes, key, operators and bans in
        the store, so a new hub on the same store enforces them.
        """
        self.hub.set_op(self.alice, "#den", "bob")
        self.hub.topic(self.alice, "#den", "Den rules")
        self.hub.set_mode(self.alice, "#den", "+tk", "sesame")
        self.hub.ban(self.alice, "#den", "mallory")
        hub = make_hub(store=self.store)
        record = hub.registered["#den"]
        self.assertEqual(
            (record.owner, record.topic, record.modes, record.key, record.ops, record.bans),
            ("alice", "Den rules", "nt", "sesame", frozenset({"bob"}), frozenset({"mallory"})),
        )
        mallory = signed_on(hub, "mallory")
        self.refused("banned", hub.join, mallory, "#den", "sesame")
        guest = signed_on(hub, "dave")
        self.refused("bad_key", hub.join, guest, "#den", "wrong")
        hub.join(guest, "#den", "sesame")
        self.assertIn(Topic("#den", "Den rules", "alice", 0.0), events(guest))
        self.refused("not_op", hub.topic, guest, "#den", "mine now")


class OpTests(Case):
    def test_op_and_deop(self) -> None:
        """
        Every member sees an operator change; an operator may kick, and
        no longer once deopped.
        """
        self.hub.set_op(self.alice, "#den", "carol")
        seen = self.everyone()
        for each in seen:
            self.assertEqual(each[0], OpChanged("#den", "carol", "alice", True))
        self.hub.kick(self.carol, "#den", "bob", "testing")
        self.hub.set_op(self.alice, "#den", "carol", False)
        self.assertIn(OpChanged("#den", "carol", "alice", False), events(self.alice))
        self.refused("not_op", self.hub.kick, self.carol, "#den", "alice")

    def test_account_op_is_kept_guest_op_is_not(self) -> None:
        """
        In a registered room, an identified operator is kept by account;
        a guest operator is not kept.
        """
        self.hub.set_op(self.alice, "#den", "bob")
        self.hub.set_op(self.alice, "#den", "carol")
        self.assertEqual(self.hub.registered["#den"].ops, frozenset({"bob"}))

    def test_members_cannot(self) -> None:
        """
        A member who is no operator is refused every operator request
        (C{not_op}), and nobody hears of it.
        """
        for request, args in (
            (self.hub.set_op, ("#den", "carol")),
            (self.hub.kick, ("#den", "alice")),
            (self.hub.ban, ("#den", "alice")),
            (self.hub.set_mode, ("#den", "+m")),
            (self.hub.invite, ("#den", "alice")),
        ):
            self.refused("not_op", request, self.carol, *args)
        self.assertEqual(self.everyone(), [[], [], []])

    def test_owner_protected(self) -> None:
        """
        Nobody may kick, deop or ban the owner; nor may the owner deop
        itself.
        """
        self.hub.set_op(self.alice, "#den", "bob")
        self.refused("not_allowed", self.hub.kick, self.bob, "#den", "alice")
        self.refused("not_allowed", self.hub.set_op, self.bob, "#den", "alice", False)
        self.refused("not_allowed", self.hub.ban, self.bob, "#den", "alice")
        self.refused("not_allowed", self.hub.set_op, self.alice, "#den", "alice", False)

    def test_target_must_be_present(self) -> None:
        """
        The target of an operator request must be a member, and a valid
        nickname.
        """
        self.refused("no_such_nick", self.hub.set_op, self.alice, "#den", "zed")
        self.refused("bad_nick", self.hub.kick, self.alice, "#den", "#den")


class KickBanTests(Case):
    def test_kick_seen_by_all(self) -> None:
        """
        Every member, the kicked one included, sees a kick; the kicked
        member may join again.
        """
        self.hub.kick(self.alice, "#den", "carol", "be nice")
        for each in self.everyone():
            self.assertEqual(each, [Kicked("#den", "carol", "alice", "be nice")])
        self.assertNotIn("#den", self.carol.rooms)
        self.hub.join(self.carol, "#den")  # a kick is not a ban

    def test_ban_account_puts_out_and_keeps_out(self) -> None:
        """
        A ban on an identified user is by account: another nickname does not
        get it back in.
        """
        self.hub.ban(self.alice, "#den", "bob")
        alice_saw, bob_saw, _ = self.everyone()
        self.assertEqual(
            alice_saw,
            [BanChanged("#den", "bob", "alice", True), Kicked("#den", "bob", "alice", "banned")],
        )
        self.assertEqual(bob_saw, alice_saw)
        self.hub.change_nick(self.bob, "bobby")
        self.refused("banned", self.hub.join, self.bob, "#den")
        self.hub.ban(self.alice, "#den", "bob", False)
        self.hub.join(self.bob, "#den")

    def test_unban_not_banned(self) -> None:
        """
        Lifting a ban that is not there is C{not_banned}.
        """
        self.refused("not_banned", self.hub.ban, self.alice, "#den", "carol", False)


class ModeTests(Case):
    def test_show(self) -> None:
        """
        C{mode} without a change shows the room's modes and key.
        """
        self.hub.set_mode(self.carol, "#den", None)
        self.assertEqual(events(self.carol), [Modes("#den", "+n", None, None, 0.0)])
        self.hub.set_mode(self.alice, "#den", "+mik", "k3y")
        self.everyone()
        self.hub.set_mode(self.carol, "#den", None)
        self.assertEqual(events(self.carol), [Modes("#den", "+ikmn", "k3y", None, 0.0)])

    def test_changes_seen_once_each(self) -> None:
        """
        A change is announced once, to every member, naming each flag that
        changed (as IRC's MODE does); a change that changes nothing answers
        the asker with the modes.
        """
        self.hub.set_mode(self.alice, "#den", "+mtm")
        expected = [ModeChanged("#den", "+mt", "alice")]
        self.assertEqual(self.everyone(), [expected] * 3)
        self.hub.set_mode(self.alice, "#den", "+m")
        self.assertEqual(self.everyone(), [[Modes("#den", "+mnt", None, None, 0.0)], [], []])

    def test_moderated(self) -> None:
        """
        In a C{+m} room only operators talk; a refused message reaches
        nobody.
        """
        self.hub.set_mode(self.alice, "#den", "+m")
        self.everyone()
        self.refused("moderated", self.hub.say, self.carol, "#den", "hello?")
        self.assertEqual(self.everyone(), [[], [], []])
        self.hub.say(self.alice, "#den", "ops only")

    def test_topic_lock(self) -> None:
        """
        In a C{+t} room only operators set the topic.
        """
        self.hub.set_mode(self.alice, "#den", "+t")
        self.refused("not_op", self.hub.topic, self.carol, "#den", "mine")
        self.hub.topic(self.alice, "#den", "ours")
        self.assertIn(TopicChanged("#den", "ours", "alice", 0.0), events(self.carol))

    def test_invite_only(self) -> None:
        """
        A C{+i} room lets in whoever an operator invited, once.
        """
        self.hub.set_mode(self.alice, "#den", "+i")
        dave = signed_on(self.hub, "dave")
        self.refused("invite_only", self.hub.join, dave, "#den")
        self.hub.invite(self.alice, "#den", "dave")
        self.assertEqual(events(dave), [Invited("#den", "alice")])
        self.hub.join(dave, "#den")
        self.hub.part(dave, "#den")
        self.refused("invite_only", self.hub.join, dave, "#den")

    def test_key(self) -> None:
        """
        A C{+k} room needs its key, which every member is shown; C{-k}
        removes it.
        """
        self.hub.set_mode(self.alice, "#den", "+k", "sesame")
        self.assertEqual(events(self.carol), [ModeChanged("#den", "+k sesame", "alice")])
        dave = signed_on(self.hub, "dave")
        self.refused("bad_key", self.hub.join, dave, "#den")
        self.refused("bad_key", self.hub.join, dave, "#den", "open")
        self.hub.join(dave, "#den", "sesame")
        self.hub.set_mode(self.alice, "#den", "-k")
        self.assertIsNone(self.hub.rooms["#den"].key)

    def test_bad_modes(self) -> None:
        """
        Unknown flags, a missing sign or letters, and a missing or spaced
        key are refused, and change nothing.
        """
        for change, key in (("+x", None), ("m", None), ("+", None), ("+k", None), ("+k", "a b")):
            self.refused(
                "bad_key" if "k" in change else "bad_mode",
                self.hub.set_mode,
                self.alice,
                "#den",
                change,
                key,
            )
        self.assertEqual(self.hub.rooms["#den"].modes, "n")


class AdminTests(Case):
    def test_admin_moderates_anywhere_and_kills(self) -> None:
        """
        A server operator cannot be banned by a room's owner, joins past
        C{+i} and C{+k}, kicks the owner, and kills users, who are told
        why and closed.
        """
        root = account(self.hub, "root")
        self.hub.set_mode(self.alice, "#den", "+ik", "sesame")
        self.refused("not_allowed", self.hub.ban, self.alice, "#den", "root")
        self.hub.join(root, "#den")  # past invitation and key
        self.hub.kick(root, "#den", "alice", "admin says")
        self.hub.kill(root, "carol", "spam")
        client = self.carol.client
        assert isinstance(client, RecordingClient)
        self.assertTrue(client.closed)
        self.assertIn(Error("killed", "You were killed by root: spam"), client.events)
        self.assertNotIn("carol", self.hub.users)

    def test_only_admins_kill(self) -> None:
        """
        Anyone else's C{kill} is C{not_admin}.
        """
        self.refused("not_admin", self.hub.kill, self.alice, "carol")
        self.assertIn("carol", self.hub.users)

    def test_admin_guest_is_no_admin(self) -> None:
        """
        Admin rights come with the account, not with the nickname.
        """
        hub = make_hub(admins=["root"])
        root = signed_on(hub, "root")
        other = signed_on(hub, "other")
        self.assertRaises(ChatError, hub.kill, root, other.nick)
        self.assertIn("other", hub.users)


class BanTakesOpTests(Case):
    def test_banned_operator_stays_out(self) -> None:
        """
        A ban takes away operator status, so a banned operator cannot walk
        back in past its own ban.
        """
        self.hub.set_op(self.alice, "#den", "bob")
        self.hub.ban(self.alice, "#den", "bob")
        self.assertNotIn("bob", self.hub.registered["#den"].ops)
        self.refused("banned", self.hub.join, self.bob, "#den")

    def test_op_twice_answers(self) -> None:
        """
        Making an operator of an operator changes nothing and says so to
        the asker alone.
        """
        self.hub.set_op(self.alice, "#den", "bob")
        self.everyone()
        self.hub.set_op(self.alice, "#den", "bob")
        self.assertEqual(self.everyone(), [[Notice("bob is already an operator of #den")], [], []])


class LobbyRulesTests(SynchronousTestCase):
    """
    A server operator may set modes on #lobby or ban from it; whoever signs
    on then is welcomed to the rooms it is really in.
    """

    def setUp(self) -> None:
        self.hub = make_hub(admins=["root"])
        self.root = account(self.hub, "root")

    def signing_on(self, nick: str) -> tuple[User, list[object]]:
        client = RecordingClient()
        user = self.hub.connect(client, nick)
        return user, client.take()

    def test_invite_only_lobby(self) -> None:
        """
        After a server operator sets #lobby C{+i}, a new user is welcomed
        to no room and told why, and is in no room; the lobby's members do
        not see it come.  A user it invites (by nickname, once online)
        gets in.
        """
        self.hub.set_mode(self.root, "#lobby", "+i")
        events(self.root)
        user, seen = self.signing_on("newbie")
        self.assertEqual(
            seen,
            [
                Welcome("newbie", ()),
                Error("invite_only", "#lobby is invite only; ask an operator"),
            ],
        )
        self.assertEqual(user.rooms, {})
        self.assertIs(self.hub.users["newbie"], user)
        self.assertEqual(events(self.root), [])
        self.hub.invite(self.root, "#lobby", "newbie")
        self.hub.join(user, "#lobby")
        self.assertEqual(list(user.rooms), ["#lobby"])

    def test_banned_and_keyed_lobby(self) -> None:
        """
        A nickname banned from #lobby, or a lobby with a key, gets the
        same: a welcome to no room, then the reason.
        """
        troll, _ = self.signing_on("troll")
        self.hub.ban(self.root, "#lobby", "troll")
        self.hub.disconnect(troll)
        _, seen = self.signing_on("troll")
        self.assertEqual(
            seen, [Welcome("troll", ()), Error("banned", "You are banned from #lobby")]
        )
        self.hub.set_mode(self.root, "#lobby", "+k", "sesame")
        _, seen = self.signing_on("visitor")
        self.assertEqual(seen[0], Welcome("visitor", ()))
        self.assertEqual([type(e) for e in seen], [Welcome, Error])
        self.assertEqual(seen[1].code, "bad_key")

    def test_server_operators_are_exempt(self) -> None:
        """
        A server operator signing on with its password enters an
        invite-only #lobby as ever.
        """
        self.hub.set_mode(self.root, "#lobby", "+i")
        self.hub.disconnect(self.root)
        client = RecordingClient()
        account_name = self.successResultOf(self.hub.authenticate(client, "root", "pass-root"))
        root = self.hub.connect(client, "root", account_name)
        self.assertEqual(client.events[0], Welcome("root", ("#lobby",), "root"))
        self.assertEqual(list(root.rooms), ["#lobby"])

    def test_welcome_names_the_lobby_as_spelled(self) -> None:
        """
        An open lobby: the welcome names it, then the joins follow.
        """
        _, seen = self.signing_on("plain")
        self.assertEqual(seen[:2], [Welcome("plain", ("#lobby",)), Joined("#lobby", "plain")])


class OutsideTests(Case):
    def test_members_only_by_default(self) -> None:
        """
        Every room, the lobby included, has mode C{n}: someone who is not
        in it cannot speak in it, and nobody hears of the attempt.
        """
        dave = self.outsider("dave")
        self.assertEqual((self.hub.rooms["#den"].modes, self.hub.rooms["#lobby"].modes), ("n", "n"))
        self.refused("not_in_room", self.hub.say, dave, "#den", "let me in")
        self.assertEqual(self.everyone(), [[], [], []])

    def test_minus_n_lets_outsiders_speak(self) -> None:
        """
        In a room without C{n} anyone not banned may speak from outside:
        the members get the message, the sender no copy.  A moderated room
        still hears only operators and voiced members, and a room that does
        not exist is not one the sender is in.
        """
        self.hub.set_mode(self.alice, "#den", "-n")
        self.assertEqual(self.everyone(), [[ModeChanged("#den", "-n", "alice")]] * 3)
        dave = self.outsider("dave")
        message = self.hub.say(dave, "#den", "hello from outside")
        expected = Message("#den", "dave", "hello from outside", 0.0, message.id)
        self.assertEqual(self.everyone(), [[expected]] * 3)
        self.assertEqual(events(dave), [])
        self.hub.ban(self.alice, "#den", "dave")
        self.everyone()
        self.refused("banned", self.hub.say, dave, "#den", "again")
        eve = self.outsider("eve")
        self.hub.set_mode(self.alice, "#den", "+m")
        self.refused("moderated", self.hub.say, eve, "#den", "hello?")
        self.refused("not_in_room", self.hub.say, eve, "#nowhere", "hello?")
        self.assertEqual(self.everyone(), [[ModeChanged("#den", "+m", "alice")]] * 3)


class SecretTests(Case):
    def test_secret_rooms_are_listed_to_members_only(self) -> None:
        """
        A C{+s} room is left out of the room list of anyone not in it.
        """
        self.hub.set_mode(self.alice, "#den", "+s")
        self.everyone()
        dave = self.outsider("dave")
        self.hub.list_rooms(dave)
        self.assertEqual(events(dave), [RoomList((RoomInfo("#lobby", 4, ""),))])
        self.hub.list_rooms(self.carol)
        self.assertEqual(
            events(self.carol),
            [RoomList((RoomInfo("#den", 3, ""), RoomInfo("#lobby", 4, "")))],
        )
        self.hub.set_mode(self.carol, "#den", None)
        self.assertEqual(events(self.carol), [Modes("#den", "+ns", None, None, 0.0)])


class LimitTests(Case):
    def test_a_full_room_refuses(self) -> None:
        """
        A room with C{+l N} and N members refuses a join, before anything
        changes; an invitation does not get past the limit; a server
        operator does.
        """
        self.hub.set_mode(self.alice, "#den", "+l", limit=3)
        self.assertEqual(self.everyone(), [[ModeChanged("#den", "+l 3", "alice")]] * 3)
        dave = self.outsider("dave")
        error = self.assertRaises(ChatError, self.hub.join, dave, "#den")
        self.assertEqual((error.code, error.message), ("room_full", "#den is full"))
        self.assertEqual((self.everyone(), events(dave)), ([[], [], []], []))
        self.assertNotIn("#den", dave.rooms)
        self.hub.invite(self.alice, "#den", "dave")
        self.refused("room_full", self.hub.join, dave, "#den")
        self.hub.set_mode(self.carol, "#den", None)
        self.assertEqual(events(self.carol), [Modes("#den", "+ln", None, 3, 0.0)])
        self.hub.join(account(self.hub, "root"), "#den")

    def test_change_and_remove(self) -> None:
        """
        C{+l N} changes the limit (setting the same one changes nothing),
        C{-l} removes it; the limit is kept with a registered room.
        """
        self.hub.set_mode(self.alice, "#den", "+l", limit=5)
        self.hub.set_mode(self.alice, "#den", "+l", limit=5)
        self.hub.set_mode(self.alice, "#den", "+lt", limit=4)
        self.assertEqual(
            self.everyone()[0],
            [
                ModeChanged("#den", "+l 5", "alice"),
                Modes("#den", "+ln", None, 5, 0.0),
                ModeChanged("#den", "+lt 4", "alice"),
            ],
        )
        self.assertEqual(self.hub.registered["#den"].limit, 4)
        self.assertEqual(make_hub(store=self.store).registered["#den"].limit, 4)
        self.hub.set_mode(self.alice, "#den", "-l")
        self.assertEqual(self.everyone()[1], [ModeChanged("#den", "-l", "alice")])
        self.assertIsNone(self.hub.rooms["#den"].limit)
        self.assertEqual(self.hub.rooms["#den"].mode_string(), "+nt")

    def test_bad_limits(self) -> None:
        """
        A limit that is missing, not positive or too big is C{bad_limit},
        and nothing changes, not even the other flags of the change.
        """
        self.hub.set_mode(self.alice, "#den", "+l", limit=7)
        self.everyone()
        for limit in (None, 0, -1, 2**31 + 1):
            self.refused("bad_limit", self.hub.set_mode, self.alice, "#den", "+ml", None, limit)
        for text in ("", "abc", "-3", "0", "+5", "2147483649", "9" * 5000):
            self.refused("bad_limit", parse_limit, text)
        self.assertEqual(parse_limit(" 12 "), 12)
        self.assertEqual((self.hub.rooms["#den"].modes, self.hub.rooms["#den"].limit), ("n", 7))
        self.assertEqual(self.everyone(), [[], [], []])

    def test_a_lower_limit_puts_nobody_out(self) -> None:
        """
        Lowering the limit below the member count leaves the members in;
        the room lets nobody else in until it is below the limit again.
        """
        self.hub.set_mode(self.alice, "#den", "+l", limit=1)
        self.assertEqual(len(self.hub.rooms["#den"].members), 3)
        dave = self.outsider("dave")
        self.refused("room_full", self.hub.join, dave, "#den")
        self.hub.part(self.carol, "#den")
        self.refused("room_full", self.hub.join, dave, "#den")
        self.hub.set_mode(self.alice, "#den", "+l", limit=3)
        self.hub.join(dave, "#den")


class VoiceTests(Case):
    def test_voice_seen_by_all(self) -> None:
        """
        Every member sees a voice change, then the user list, which marks
        the voiced members.
        """
        self.hub.set_voice(self.alice, "#den", "carol")
        after = UserList("#den", ("alice", "bob", "carol"), ("alice",), voiced=("carol",))
        self.assertEqual(
            self.everyone(), [[VoiceChanged("#den", "carol", "alice", True), after]] * 3
        )
        self.hub.set_voice(self.alice, "#den", "carol", False)
        self.assertEqual(events(self.bob)[0], VoiceChanged("#den", "carol", "alice", False))
        self.assertEqual(self.hub.rooms["#den"].voiced, set())

    def test_voiced_members_speak_in_moderated_rooms(self) -> None:
        """
        In a C{+m} room a voiced member may speak, and no longer once its
        voice is taken.
        """
        self.hub.set_mode(self.alice, "#den", "+m")
        self.refused("moderated", self.hub.say, self.carol, "#den", "hello?")
        self.hub.set_voice(self.alice, "#den", "carol")
        self.hub.say(self.carol, "#den", "hello!")
        self.hub.set_voice(self.alice, "#den", "carol", False)
        self.refused("moderated", self.hub.say, self.carol, "#den", "hello?")

    def test_voice_ends_on_leaving(self) -> None:
        """
        A voice lasts while the member stays: back in the room, it has
        none.
        """
        self.hub.set_voice(self.alice, "#den", "carol")
        self.hub.part(self.carol, "#den")
        self.hub.join(self.carol, "#den")
        self.assertEqual(self.hub.rooms["#den"].voiced, set())
        self.assertEqual(events(self.carol)[-1].voiced, ())

    def test_only_operators_voice_members(self) -> None:
        """
        A member who is no operator may not give a voice; the target must
        be in the room; a voice given twice is answered, not announced.
        """
        self.refused("not_op", self.hub.set_voice, self.carol, "#den", "bob")
        self.refused("not_op", self.hub.set_voice, self.carol, "#den", "carol")
        self.refused("no_such_nick", self.hub.set_voice, self.alice, "#den", "zed")
        self.hub.set_voice(self.alice, "#den", "bob")
        self.everyone()
        self.hub.set_voice(self.alice, "#den", "bob")
        self.assertEqual(self.everyone(), [[Notice("bob is already voiced in #den")], [], []])


class TimeTests(Case):
    def test_topic_time(self) -> None:
        """
        A topic carries when it was set: to the members, to a joiner, to
        whoever asks, and across a restart.
        """
        self.clock.advance(100)
        self.hub.topic(self.alice, "#den", "plans")
        self.assertEqual(self.everyone(), [[TopicChanged("#den", "plans", "alice", 100.0)]] * 3)
        self.clock.advance(50)
        dave = signed_on(self.hub, "dave")
        self.hub.join(dave, "#den")
        self.assertIn(Topic("#den", "plans", "alice", 100.0), events(dave))
        self.hub.topic(dave, "#lobby")
        self.assertEqual(events(dave), [Topic("#lobby", "", None, None)])
        self.assertEqual(make_hub(store=self.store).registered["#den"].topic_at, 100.0)

    def test_creation_time(self) -> None:
        """
        A room's modes say when the room came to be.
        """
        self.clock.advance(42)
        self.hub.join(self.carol, "#new")
        self.clock.advance(1)
        self.hub.set_mode(self.carol, "#new", None)
        self.assertEqual(events(self.carol)[-1], Modes("#new", "+n", None, None, 42.0))


class RecordTests(SynchronousTestCase):
    def test_older_records_have_n(self) -> None:
        """
        A room record as a list comes back as it was; one written by a
        chatd before limits and topic times has C{n}, which every room had.
        """
        record = RoomRecord("#den", "alice", "hi", "bob", "ns", "k", frozenset({"bob"}), limit=5)
        self.assertEqual(RoomRecord.from_list(record.to_list()), record)
        old = ["#den", "alice", "hi", "bob", "mt", None, ["bob"], []]
        self.assertEqual(
            RoomRecord.from_list(old),
            RoomRecord("#den", "alice", "hi", "bob", "mnt", None, frozenset({"bob"})),
        )
