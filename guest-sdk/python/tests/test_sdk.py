import struct
import unittest

from refract_sdk import CommandHandler, Commands, NewEvent, Projection, Reactor, SentCommand, UpcastFailure, Upcaster, real, reject, upcast_all
from refract_sdk.batch import MalformedBatch, unpack
from refract_sdk.testing import ApplyError, ProjectionTest, ReactorTest, event, given
from refract_sdk.values import Pending, tagged


class Packing(unittest.TestCase):
    def test_parameters_pack_as_wit_sql_encodes_them(self):
        p = Pending()
        p.push(7, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", [None, 5, 1.5, "é", b"\x09"])
        p.push(8, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", [True, real(2), -1, 2**63 - 1, bytearray(b"")])
        self.assertEqual(p.statements, ["INSERT INTO t VALUES (?, ?, ?, ?, ?)"])
        self.assertEqual(p.positions, [7, 8])
        self.assertEqual(p.statement_indices, [0, 0])
        want = (
            struct.pack("<I", 5) + b"\x00" + struct.pack("<Bq", 1, 5) + struct.pack("<Bd", 2, 1.5)
            + struct.pack("<BI", 3, 2) + "é".encode() + struct.pack("<BI", 4, 1) + b"\x09"
            + struct.pack("<I", 5) + struct.pack("<Bq", 1, 1) + struct.pack("<Bd", 2, 2.0)
            + struct.pack("<Bq", 1, -1) + struct.pack("<Bq", 1, 2**63 - 1) + struct.pack("<BI", 4, 0)
        )
        self.assertEqual(bytes(p.params), want)

    def test_values_that_cannot_bind_are_refused_and_queue_nothing(self):
        p = Pending()
        with self.assertRaises(OverflowError):
            p.push(1, "X", [2**63])
        with self.assertRaises(TypeError):
            p.push(1, "X", [object()])
        self.assertTrue(p.is_empty)
        self.assertEqual(bytes(p.params), b"")
        self.assertEqual(tagged(9.600000000000001), (2, 9.600000000000001))


class Batches(unittest.TestCase):
    def test_a_packed_batch_unpacks_into_its_events_multi_byte_text_included(self):
        fields = [["s-1", "A", '{"x":"ü"}', "{}"], ["s-2", "B", "{}", '{"k":1}']]
        lengths = [len(f.encode()) for fs in fields for f in fs]
        text = "".join(f for fs in fields for f in fs)
        events = list(unpack([3, 4], [1, 1], [10, 11], lengths, text))
        self.assertEqual(events[0], (3, "s-1", 1, "A", '{"x":"ü"}', "{}", 10))
        self.assertEqual(events[1], (4, "s-2", 1, "B", "{}", '{"k":1}', 11))
        with self.assertRaisesRegex(MalformedBatch, "runs past"):
            list(unpack([3, 4], [1, 1], [10, 11], lengths[:7] + [99], text))
        with self.assertRaisesRegex(MalformedBatch, "differ in length"):
            list(unpack([3, 4], [1], [10, 11], lengths, text))


class Counter(Projection):
    name = "counter"
    version = "1"
    event_types = ["Counted"]
    migrations = ["CREATE TABLE counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL, last REAL)"]

    def apply(self, db, e):
        by = e.data["by"]
        db.write(
            "INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (stream) DO UPDATE SET n = n + excluded.n, last = excluded.last",
            [e.stream_id, by, real(by)],
        )


class Door(CommandHandler):
    name = "door"
    version = "1"
    command_types = ["Open", "Close"]

    def initial_state(self):
        return False

    def evolve(self, is_open, e):
        return {"Opened": True, "Closed": False}.get(e.type, is_open)

    def decide(self, is_open, c):
        if c.type == "Open":
            if is_open:
                raise reject("already_open", "the door is open")
            return [NewEvent("Opened", {"by": c.data.get("by")})]
        if not is_open:
            raise reject("already_closed", "the door is closed")
        return [NewEvent("Closed", {})]


class Helpers(unittest.TestCase):
    def test_a_projection_test_applies_a_batch_in_one_transaction_and_names_a_failing_event(self):
        t = ProjectionTest(Counter())
        t.apply([event(1, "a", 1, "Counted", {"by": 2}), event(2, "a", 2, "Other", {}), event(3, "b", 1, "Counted", {"by": 1})])
        self.assertEqual(t.query("SELECT * FROM counts ORDER BY stream"), [
            {"stream": "a", "n": 2, "last": 2.0},
            {"stream": "b", "n": 1, "last": 1.0},
        ])
        with self.assertRaises(ApplyError) as e:
            t.apply([event(4, "a", 3, "Counted", {"by": 5}), event(5, "c", 1, "Counted", {})])
        self.assertEqual(e.exception.position, 5)
        self.assertEqual(e.exception.message, "event 5 (Counted): missing field `by`")
        self.assertEqual(t.query("SELECT n FROM counts WHERE stream = ?", ["a"]), [{"n": 2}], "rolled back")
        with self.assertRaisesRegex(RuntimeError, "refused"):
            t.db.execute("ATTACH DATABASE 'x' AS y")

    def test_given_when_then(self):
        given(Door(), []).when("Open", {"by": "ada"}).then_events([NewEvent("Opened", {"by": "ada"})])
        given(Door(), [NewEvent("Opened", {})]).when("Open", {}).then_rejected("already_open")
        given(Door(), [NewEvent("Opened", {})]).when("Close", {}).then_events([NewEvent("Closed", {})])
        with self.assertRaisesRegex(AssertionError, "expected rejection"):
            given(Door(), []).when("Open", {}).then_rejected("already_open")


if __name__ == "__main__":
    unittest.main()


class Rename(Upcaster):
    name = "rename"
    version = "1"
    event_type = "Named"
    from_version = 1

    def upcast(self, data):
        data["full_name"] = data.pop("name")
        return data


class Upcasting(unittest.TestCase):
    def test_each_event_is_rewritten_and_big_numbers_stay_exact(self):
        out = upcast_all(Rename(), ['{"name":"é","n":12345678901234567890,"p":0.30000000000000004}', '{"name":"b"}'])
        self.assertEqual(out, ['{"n":12345678901234567890,"p":0.30000000000000004,"full_name":"é"}', '{"full_name":"b"}'])

    def test_a_refused_event_is_named_by_its_index(self):
        with self.assertRaises(UpcastFailure) as e:
            upcast_all(Rename(), ['{"name":"a"}', '{"n":1}'])
        self.assertEqual((e.exception.index, e.exception.message), (1, "missing field `name`"))
        with self.assertRaises(UpcastFailure) as e:
            upcast_all(Rename(), ['{"name":"a"}', "not json"])
        self.assertEqual(e.exception.index, 1)
        self.assertIn("cannot read", e.exception.message)


class Seen(Reactor):
    name = "seen"
    version = "1"
    migrations = ["CREATE TABLE seen (p INTEGER PRIMARY KEY)"]

    def react(self, db, event, commands):
        db.execute("INSERT INTO seen VALUES (?)", [event.position])
        if event.type == "Bad":
            raise ValueError("bad event")
        commands.send("h", event.stream_id, "Do", {"at": event.position})


class Reacting(unittest.TestCase):
    def test_a_failing_batch_sends_nothing_and_a_command_needs_its_parts(self):
        t = ReactorTest(Seen())
        with self.assertRaises(ApplyError) as e:
            t.react([event(1, "s", 1, "Ok", {}), event(2, "s", 2, "Bad", {})])
        self.assertEqual(e.exception.position, 2)
        self.assertEqual(t.query("SELECT p FROM seen"), [])
        self.assertEqual(t.react([event(1, "s", 1, "Ok", {})]), [SentCommand("h", "Do", "s", {"at": 1}, 1)])
        with self.assertRaises(TypeError):
            Commands().send("", "s", "Do")

