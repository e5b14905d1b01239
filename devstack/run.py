"""The whole loop in one command: server, agents, registered tasks, pipeline, trigger and app.

    python -m devstack run [--data-dir .data] [--server-port 8008] [--app-port 7860]
                           [--clearml-serving [--serving-port 8080]]

Uses the embedded server unless a real ClearML server is configured (CLEARML_API_HOST, CLEARML_CONFIG_FILE or
~/clearml.conf), in which case it changes nothing about the server and only starts local agents (unless
--no-agents), registers what is missing and serves the app. Every step is idempotent, so a second run reuses
the data dir. Ctrl-C stops every process this command started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from classifier.samples import real_photos
from common.waiting import wait_until
from devstack.agents import AgentProcess, start_agent
from devstack.clearml_serving import InferenceProcess, start_inference, wait_until_serving
from devstack.processes import kill_tree
from loop import clearml_serving, datasets, registry, settings
from loop.errors import StageError, exit_on_error

# One machine, one server: the trigger looks for new dataset versions every 1.2 s (one query), so feedback starts
# a retrain within about a second. A shared server's scheduler can poll less often (`--poll-minutes`).
TRIGGER_POLL_MINUTES = 0.02


def log(message: str) -> None:
    print(f"[devstack {time.strftime('%H:%M:%S')}] {message}", flush=True)


def real_server_configured() -> bool:
    if os.environ.get("CLEARML_API_HOST") or os.environ.get("CLEARML_CONFIG_FILE"):
        return True
    return any((Path.home() / name).exists() for name in ("clearml.conf", ".clearml.conf"))


class Stack:
    """The processes this command started, stopped together on exit."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.client_env: dict[str, str] = {}
        self.server = None
        self.agents: list[AgentProcess] = []
        self.app: subprocess.Popen | None = None
        self.inference: InferenceProcess | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.client_env, "PYTHONUNBUFFERED": "1"}

    def step(self, title: str, *module_args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `python -m <module_args>` against the stack's server, echoing its output."""
        log(f"{title}: python -m {' '.join(module_args)}")
        result = subprocess.run(
            [sys.executable, "-m", *module_args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output = result.stdout.strip()
        if output:
            print("\n".join(f"    {line}" for line in output.splitlines()[-15:]), flush=True)
        if check and result.returncode != 0:
            raise StageError(f"step failed ({title}), exit code {result.returncode}")
        return result

    def start_server(self, port: int) -> None:
        from localserver import start_server_process
        from loop import webpage

        server_dir = self.data_dir / "server"
        log(f"starting the embedded ClearML server on 127.0.0.1:{port} (data: {server_dir})")
        self.server = start_server_process(server_dir, port=port, web_extensions=[webpage.SPEC])
        config = self.server.write_client_config(self.data_dir / "clearml.conf")
        self.client_env = self.server.client_env(config)
        log(f"server ready: API {self.server.api_url}, files {self.server.files_url}; client config {config}")
        # The secret stays in the 0600 client config rather than in the terminal's scrollback.
        log(
            f"web UI: {self.server.web_url} (sign in with access key {self.server.access_key} "
            f"and the secret_key in {config}; add users with "
            f"python -m localserver users add NAME --data-dir {server_dir})"
        )

    def start_agents(self) -> None:
        agents_dir = self.data_dir / "agents"
        services = start_agent(
            self.client_env, agents_dir, queue=settings.SERVICES_QUEUE, services_mode=True, create_queue=True
        )
        worker = start_agent(
            self.client_env, agents_dir, queue=[settings.DEFAULT_QUEUE, settings.TRAIN_QUEUE], create_queue=True
        )
        self.agents = [services, worker]
        for agent in self.agents:
            log(f"agent {agent.worker_id} (pid {agent.pid}) on queue(s) {agent.queue}; log: {agent.log_path}")

    def start_app(self, port: int, extra_args: list[str]) -> None:
        app_log = self.data_dir / "app.log"
        command = [sys.executable, "-m", "app", "--port", str(port), "--data-dir", str(self.data_dir / "app")]
        log(f"starting the app: {' '.join(command[1:] + extra_args)} (log: {app_log})")
        with app_log.open("ab") as handle:
            self.app = subprocess.Popen(
                command + extra_args,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}/"

        def answers() -> bool:
            if self.app.poll() is not None:
                raise StageError(f"the app exited with code {self.app.returncode}; see {app_log}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return True
            except OSError:
                return False

        try:
            wait_until(answers, 180, f"the app to answer at {url}")
        except TimeoutError as error:
            raise StageError(f"{error}; see {app_log}") from None
        log(f"app ready: {url}")

    def start_clearml_serving(self, port: int) -> None:
        """Set up the serving service, start its inference process and wait until `pets` answers a real photo
        with the production model."""
        service = clearml_serving.set_up()
        log(f"clearml-serving service {service.id}: endpoint {service.endpoint}")
        self.inference = start_inference(self.client_env, service.id, port, self.data_dir / "clearml-serving")
        log(f"starting clearml-serving's inference service on 127.0.0.1:{port} (log: {self.inference.log_path})")
        photo = real_photos()[0][0].read_bytes()
        try:
            wait_until_serving(self.inference, photo, timeout=180)
        except (TimeoutError, RuntimeError) as error:
            raise StageError(str(error)) from None
        log(f"clearml-serving ready: {self.inference.url()}")

    def stop(self) -> None:
        if self.inference is not None:
            self.inference.stop()
        if self.app is not None:
            kill_tree(self.app.pid)
        for agent in self.agents:
            kill_tree(agent.pid)
            agent.stop()
        if self.server is not None:
            self.server.stop()
        log("stopped every process this command started")


def wait_for_production(timeout: float) -> registry.RegistryModel:
    try:
        return wait_until(registry.production_model, timeout, "a production model", interval=5)
    except TimeoutError as error:
        raise StageError(
            f"{error}: look at the agents' logs and the pipeline task "
            "(a pipeline that stays pending means no agent serves the services queue)"
        ) from None


def run(args: argparse.Namespace) -> None:
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir)
    # Ctrl-C arrives as KeyboardInterrupt; a SIGTERM from a supervisor gets the same clean-up.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if real_server_configured() and not args.embedded:
            log("a ClearML server is configured (clearml.conf / CLEARML_API_HOST): using it")
        else:
            stack.start_server(args.server_port)
            os.environ.update(stack.client_env)
        if args.agents:
            stack.start_agents()
        stack.step("registering the stage templates", "tasks.register")
        stack.step("registering the retrain pipeline", "pipelines.retrain", "register")
        dataset_id = datasets.latest_version_id()
        if dataset_id:
            log(f"dataset {settings.DATASET_PROJECT}/{settings.DATASET_NAME} exists: newest version {dataset_id}")
        else:
            stack.step("creating the base dataset from the offline sample set", "tasks.bootstrap_dataset", "--sample")
            dataset_id = datasets.latest_version_id()
        trigger_args = ["--poll-minutes", str(args.trigger_poll_minutes)]
        if stack.server is not None:
            # The scheduler of an earlier run died with that run's agents but still reads in_progress.
            trigger_args.append("--replace")
        stack.step("registering the dataset trigger (scheduler on services)", "triggers.retrain_trigger", *trigger_args)
        model = registry.production_model()
        if not model:
            stack.step("first training run", "pipelines.retrain", "run", "--dataset-id", dataset_id)
            log("waiting for the pipeline to publish a production model (agents' logs: .data/agents/*.log)")
            model = wait_for_production(args.first_run_timeout)
        log(f"production model: {model.id}")
        stack.start_app(args.app_port, ["--project", settings.PROJECT])
        if args.clearml_serving:
            stack.start_clearml_serving(args.serving_port)
        log("the loop is running: predict and correct at the app; feedback versions trigger retraining.")
        log("Ctrl-C stops everything.")
        while True:
            time.sleep(2)
            if stack.app is not None and stack.app.poll() is not None:
                raise StageError(f"the app exited with code {stack.app.returncode}; see {data_dir / 'app.log'}")
            if stack.inference is not None and stack.inference.process.poll() is not None:
                raise StageError(f"clearml-serving exited; see {stack.inference.log_path}")
            for agent in stack.agents:
                if not agent.alive():
                    raise StageError(f"agent {agent.worker_id} exited; see {agent.log_path}")
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        stack.stop()


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the whole loop")
    run_parser.add_argument("--data-dir", type=Path, default=Path(".data"), help="server, agents and app state")
    run_parser.add_argument("--server-port", type=int, default=8008)
    run_parser.add_argument("--app-port", type=int, default=7860)
    run_parser.add_argument("--embedded", action="store_true", help="use the embedded server even if configured")
    run_parser.add_argument("--no-agents", dest="agents", action="store_false", help="use agents you run yourself")
    run_parser.add_argument("--trigger-poll-minutes", type=float, default=TRIGGER_POLL_MINUTES)
    run_parser.add_argument("--first-run-timeout", type=float, default=1800, help="seconds")
    run_parser.add_argument(
        "--clearml-serving", action="store_true", help="also serve production with clearml-serving's inference service"
    )
    run_parser.add_argument("--serving-port", type=int, default=8080, help="of clearml-serving (127.0.0.1)")
    args = parser.parse_args(argv)
    run(args)
