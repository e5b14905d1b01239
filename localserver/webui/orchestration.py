"""Workers and queues: what each worker runs, what waits in each queue; taking a task off a queue, reordering."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.routing import Route

from .core import Invalid, View, WebUI, choice, text_field
from .lookups import task_names


def orchestration_page(view: View):
    queues = view.api("queues.get_all", {"order_by": ["name"]})["queues"]
    workers = view.api("workers.get_all", {})["workers"]
    ids = [e["task"] for q in queues for e in q.get("entries") or []]
    ids += [(w.get("task") or {}).get("id") for w in workers]
    tasks = task_names(view, ids)
    return view.render("orchestration.html", queues=queues, workers=workers, tasks=tasks, moves=QUEUE_MOVES)


def queue_remove(view: View):
    """Take a pending task off its queue: ``tasks.dequeue``, as the SDK's ``Task.dequeue`` does."""
    task_id = text_field(view.form, "task", "Task")
    queue = view.api("queues.get_by_id", {"queue": view.path["queue"]})["queue"]
    if task_id not in {e["task"] for e in queue.get("entries") or []}:
        raise Invalid(f"Task {task_id} is not waiting in queue {queue['name']}.")
    view.api("tasks.dequeue", {"task": task_id})
    return view.redirect("/workers-and-queues")


@dataclass(frozen=True)
class QueueMove:
    endpoint: str
    label: str
    title: str
    toward_front: bool  # impossible for the first pending task (else for the last)


QUEUE_MOVES = {
    "front": QueueMove("queues.move_task_to_front", "⤒", "To the front", True),
    "forward": QueueMove("queues.move_task_forward", "↑", "One up", True),
    "backward": QueueMove("queues.move_task_backward", "↓", "One down", False),
    "back": QueueMove("queues.move_task_to_back", "⤓", "To the back", False),
}


def queue_move(view: View):
    """Reorder a pending task within its queue (the ``queues.move_task_*`` calls)."""
    task_id = text_field(view.form, "task", "Task")
    move = choice(text_field(view.form, "to", "Move"), QUEUE_MOVES, None, "move")
    queue = view.api("queues.get_by_id", {"queue": view.path["queue"]})["queue"]
    view.api(QUEUE_MOVES[move].endpoint, {"queue": queue["id"], "task": task_id})
    return view.redirect(f"/workers-and-queues#queue-{queue['name']}")


def routes(ui: WebUI) -> list[Route]:
    return [
        Route("/workers-and-queues", ui.page(orchestration_page)),
        Route("/workers-and-queues/{tab:path}", ui.page(orchestration_page)),
        Route("/queues/{queue}/remove", ui.page(queue_remove), methods=["POST"]),
        Route("/queues/{queue}/move", ui.page(queue_move), methods=["POST"]),
    ]
