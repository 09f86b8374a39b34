"""The Tour tab's API endpoint reads only files a client uploaded: a payload naming a server file
is refused with one line and starts no run."""

from __future__ import annotations

from tests.test_security import call_api, photo_file, run_dirs


def test_tour_api_refuses_server_paths(live_server):
    base, outputs = live_server["url"], live_server["outputs"]
    private = photo_file(live_server["root"] / "someone-elses-room.png", seed=4)
    before = run_dirs(outputs)
    rest = [False, [[1, private.name, "push-in", 4, ""]], "crossfade", 0.5, 30, "640x360", False, "kenburns",
            "none", "nlmeans", "lanczos", 0]
    for payload in ([{"path": str(private)}], [{"path": str(private), "meta": {"_type": "gradio.FileData"}}]):
        event, data = call_api(base, "tour_preview", [payload] + rest)
        assert event == "error", (payload, data)
    assert run_dirs(outputs) == before
