"""A real fault: the server is stopped (SIGTERM: running jobs checkpoint and requeue) and
started again on the same port and store while ``job.watch()`` is iterating. The watch must
reconnect with ``after_seq`` and go on to the end: every event once, in order, ending with
the job's success."""
from __future__ import annotations

from ebm_client import Client
from ebm_server import ServerProcess

SPEC = {
    "kind": "train",
    "seed": 5,
    "model": {"type": "bernoulli_rbm", "hidden": 16},
    "train": {"method": "pcd", "k": 1, "chains": 50, "epochs": 12, "batch_size": 10,
              "learning_rate": 0.05, "checkpoint_every": 1},
}


def test_watch_survives_a_server_restart(tmp_path, digits):
    server = ServerProcess(tmp_path).start()
    try:
        client = Client(server.url)
        dataset = client.upload(digits)
        job = client.submit(SPEC, dataset=dataset)
        events, restarted_at = [], None
        for event in job.watch():
            events.append(event)
            if restarted_at is None and event.kind == "metrics":
                restarted_at = len(events)
                server.restart()  # the iterator's stream breaks here
        assert restarted_at is not None and len(events) > restarted_at, "events came after the restart"
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs)), "every event once, in order"
        assert events[-1].state == "succeeded"
        assert job.state == "succeeded" and job.attempt >= 2, "the job was requeued and resumed"
        assert max(e.epoch for e in events if e.kind == "metrics") == SPEC["train"]["epochs"]
        client.close()
    finally:
        server.stop()
