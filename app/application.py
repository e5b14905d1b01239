"""The app as one object: `create_app(config, login)` builds an `App`, which owns what serving needs (the service
and its inference workers, the publisher, the registry watcher, the serving reporter, and one ASGI app with the
REST API and the Gradio UI) and starts and stops it all with `start()` and `close()`.

Building starts nothing and changes nothing beyond the app's own objects; `start()` is the only place that changes
process-wide settings and starts threads, and `close()` stops every thread `start()` started. When the app is
served (`App.serve`), uvicorn's lifespan startup calls `start()` and its shutdown `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading

import gradio as gr
import torch
import uvicorn
from fastapi import FastAPI, Request

from app.config import AppConfig
from app.feedback_store import FeedbackStore
from app.guard import Access, LabelPolicy, RateLimiter, client_id
from app.metrics import AppMetrics, RequestMetrics
from app.model_holder import ModelHolder, ServedModel
from app.publisher import AutoPublisher, Publisher
from app.quality import PredictionLog, QualityThreshold
from app.registry import RegistryWatcher
from app.rest import RestApi
from app.review import ReviewQueue
from app.service import ClassifierService, Guards, Limits
from app.ui import ClassifierUI
from classifier.batching import InferenceWorkers
from common.waiting import wait_until

log = logging.getLogger("app")

Login = tuple[str, str]  # username, password of the UI and the REST API
GIL_SWITCH_INTERVAL_S = 0.001
THREAD_PREFIX = "app-"  # every thread an App starts is named so (see `App.threads`)
INFERENCE_THREADS = f"{THREAD_PREFIX}inference"
SERVER_THREAD = f"{THREAD_PREFIX}server"
START_TIMEOUT_S = 60.0


class App:
    """Built by `create_app`; use `with create_app(...) as app:` (or call `close()`) so that it is closed."""

    def __init__(
        self,
        config: AppConfig,
        login: Login | None,
        *,
        service: ClassifierService,
        publisher: Publisher,
        auto_publisher: AutoPublisher,
        watcher: RegistryWatcher | None,
        ui: ClassifierUI,
        metrics: AppMetrics,
    ):
        self.config, self.login = config, login
        self.metrics = metrics
        self.service, self.publisher, self.auto_publisher = service, publisher, auto_publisher
        self.watcher, self.ui = watcher, ui
        self.reporter = None  # the serving task's reporter, made by `start()` when `report_interval` > 0
        self._loop: asyncio.AbstractEventLoop | None = None  # the serving event loop, once the lifespan started
        self.asgi, self.blocks = self._asgi_app()
        self._lock = threading.Lock()
        self._started = self._closed = False
        self._process_settings: tuple[int, float] | None = None  # as they were before `start()`

    @property
    def holder(self) -> ModelHolder:
        return self.service.holder

    @property
    def inference(self) -> InferenceWorkers:
        return self.service.inference

    @property
    def started(self) -> bool:
        return self._started

    @property
    def closed(self) -> bool:
        return self._closed

    @staticmethod
    def threads() -> list[threading.Thread]:
        """The threads of this process that an App started and has not stopped yet."""
        return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX)]

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Set the process-wide settings serving needs, start the inference workers, load the production model and
        start the background workers. A second call does nothing; a closed app cannot start again."""
        with self._lock:
            if self._closed:
                raise RuntimeError("This app is closed; create a new one with create_app.")
            if self._started:
                return
            self._started = True
            self._process_settings = (torch.get_num_threads(), sys.getswitchinterval())
            # Both settings are the process's, not this app's: torch.set_num_threads sets the default that every
            # thread takes at its first torch op (and the calling thread's), the switch interval is the
            # interpreter's. Only the wide inference worker runs torch ops on several threads: a second OpenMP team
            # (made, say, by the thread that loads a model) made each forward on 2 cores nearly twice as slow (see
            # classifier.batching).
            torch.set_num_threads(1)
            # The workers take the GIL back after every torch op; behind the event loop or a request thread running
            # Python, that waits up to the switch interval (5 ms by default). 1 ms: 72 against 67 images/s (8
            # clients, 2 cores).
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
            self.inference.start()
            if self.watcher is not None:
                try:
                    self.watcher.check_once()
                except Exception:  # the UI still starts and says no model is served; the watcher keeps trying
                    log.exception("Could not load the serving model at start-up")
                self.watcher.start()
            if self.config.publish_every_n > 0 or self.config.publish_every_minutes > 0:
                self.auto_publisher.start()
            if self.config.report_interval > 0:
                self.reporter = self._start_reporter()

    def close(self) -> None:
        """Stop every thread `start()` started and the inference workers (after the forwards already queued),
        report the last figures to the serving task, and put the process-wide settings back. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.blocks.close(verbose=False)
            self.auto_publisher.stop()
            if self.watcher is not None:
                self.watcher.stop()
            if self.reporter is not None:
                self.reporter.close()  # the serving task ends as stopped, with the last figures reported
            self.inference.close()
            if self.service.log is not None:
                self.service.log.close()
            if self._process_settings is not None:
                # Back as they were, for what else runs in this process (tests, a benchmark's bare model).
                torch_threads, switch_interval = self._process_settings
                torch.set_num_threads(torch_threads)
                sys.setswitchinterval(switch_interval)

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def serve(self, *, background: bool = False, quiet: bool = False) -> AppServer:
        """Serve the app on `config.host:config.port` (its lifespan starts the app and closes it). Blocks until the
        server stops, or with `background=True` returns once it accepts requests; then `close()` the server."""
        server = AppServer(self, quiet=quiet)
        if background:
            server.start()
        else:
            server.run()
        return server

    # -- parts -----------------------------------------------------------------------------------------------

    def _start_reporter(self):
        from app.serving_report import ServingReporter

        try:
            reporter = ServingReporter(
                self.service.log,
                self.holder,
                self.config.project,
                f"serving {self.config.host}:{self.config.port}",
                self.ui.threshold,
                self.config.report_interval,
            )
        except Exception:  # the app serves without it; the figures stay in its statistics tab and REST API
            log.exception("Could not create the serving task; live quality is not reported to ClearML")
            return None
        log.info("Reporting live quality to serving task %s", reporter.id)
        reporter.start()
        return reporter

    def _asgi_app(self) -> tuple[FastAPI, gr.Blocks]:
        """One ASGI app: the REST API's routes first, the Gradio UI mounted at / behind them."""
        config = self.config

        @contextlib.asynccontextmanager
        async def lifespan(_asgi: FastAPI):
            self._loop = asyncio.get_running_loop()
            try:  # a start that failed halfway still stops what it started
                self.start()
                yield
            finally:
                self.close()

        asgi = FastAPI(
            title="Pet classifier",
            version="1",
            description="Predictions, feedback and the served model; the Gradio UI is at /.",
            openapi_url="/api/v1/openapi.json",
            docs_url="/api/v1/docs",
            redoc_url=None,
            lifespan=lifespan,
        )
        asgi.add_middleware(RequestMetrics, metrics=self.metrics)
        RestApi(
            self.service,
            login=self.login,
            concurrency=config.concurrency,
            client_of=_rest_client,
            body_budget_bytes=int(config.request_memory_mb * 2**20),
            metrics=self.metrics.text,
        ).install(asgi)
        blocks = self.ui.build()
        blocks.queue(default_concurrency_limit=config.concurrency)
        gr.mount_gradio_app(
            asgi,
            blocks,
            path="",
            auth=self.login,
            max_file_size=config.max_upload_bytes,
            show_error=True,
            # Gradio 6's run history is off, as there was none under Gradio 5: no copy of each call's inputs and
            # outputs in the browser, and no route that writes them to a Hugging Face bucket.
            run_history=False,
        )
        # Gradio's heartbeat streams (one per open browser tab or gradio_client) end when the mounted Gradio app's
        # stop event is set; until then uvicorn's shutdown waits out its graceful timeout for them.
        self._gradio = next(route.app for route in asgi.routes if hasattr(getattr(route, "app", None), "stop_event"))
        return asgi, blocks

    def end_streams(self) -> None:
        """End the open heartbeat streams (from any thread), so that a stopping server need not wait for them."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._gradio.stop_event.set)


def create_app(config: AppConfig, login: Login | None, *, model: ServedModel | None = None) -> App:
    """The app `config` describes, behind `login` (None: no login). With `model`, it serves that model and does not
    follow the registry (tests, benchmarks); otherwise its watcher serves the production model of
    `config.project`. Nothing is started."""
    holder = ModelHolder(
        f"No model in project {config.project!r} is published with tag {config.model_tag!r} yet; "
        f"it is picked up within {config.poll_interval:g} s of being published."
    )
    if model is not None:
        holder.swap(model)
    store = FeedbackStore(config.data_dir)
    limits = Limits(
        max_bytes=config.max_upload_bytes,
        max_images=config.max_images,
        max_request_pixels=int(config.max_request_megapixels * 1e6),
        decode_budget_bytes=int(config.decode_memory_mb * 2**20),
    )
    guards = Guards(
        feedback_rate=RateLimiter(config.feedback_per_minute, 60.0),
        labels=LabelPolicy(config.max_new_labels, config.max_new_labels_per_client, config.allowed_label_set or None),
    )
    review = None
    if config.review_keep:
        review = ReviewQueue(
            config.data_dir / "review", config.review_size, config.review_max_age_days * 86400, config.review_by
        )
    inference = InferenceWorkers(
        config.max_batch,
        torch_threads=config.cpu_threads or os.cpu_count(),
        single_thread_workers=config.cpu_workers,
        name=INFERENCE_THREADS,
    )
    prediction_log = PredictionLog(config.data_dir / "quality.sqlite3")
    metrics = AppMetrics(holder, prediction_log)
    service = ClassifierService(
        holder,
        store,
        limits,
        guards=guards,
        log=prediction_log,
        review=review,
        inference=inference,
        on_prediction=lambda prediction: metrics.predicted(prediction.model_id, prediction.top),
    )
    publisher = Publisher(store, config.dataset_project, config.dataset_name, output_uri=config.output_uri)
    auto_publisher = AutoPublisher(publisher, config.publish_every_n, config.publish_every_minutes)
    watcher = None
    if model is None:
        watcher = RegistryWatcher(holder, config.project, config.model_tag, config.poll_interval)
    ui = ClassifierUI(
        service,
        publisher,
        model_project=config.project,
        auto_publisher=auto_publisher,
        access=Access(login),
        threshold=QualityThreshold(config.quality_threshold, config.quality_window, config.quality_min_feedback),
    )
    return App(
        config,
        login,
        service=service,
        publisher=publisher,
        auto_publisher=auto_publisher,
        watcher=watcher,
        ui=ui,
        metrics=metrics,
    )


def _rest_client(request: Request, username: str | None) -> str:
    return client_id(username, request.client.host if request.client else None)


class AppServer:
    """uvicorn serving an App's ASGI app; the lifespan makes uvicorn's startup start the app and its shutdown close
    it ("on": a start that fails stops the server instead of serving a half-started app)."""

    def __init__(self, app: App, quiet: bool = False):
        self.app = app
        # A stop waits at most 2 s for open connections: Gradio's clients keep a heartbeat stream open.
        self._server = uvicorn.Server(
            uvicorn.Config(
                app.asgi,
                host=app.config.host,
                port=app.config.port,
                log_level="warning" if quiet else "info",
                timeout_graceful_shutdown=2,
                lifespan="on",
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The address it serves at: with port 0, the port it was given, once started."""
        port = self.app.config.port
        if self._server.started and self._server.servers:
            port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.app.config.host}:{port}/"

    @property
    def accepted_requests(self) -> bool:
        """Whether it got through its startup (the app's start included) to serving."""
        return self._server.started

    def run(self) -> None:
        """Serve in this thread until the process is told to stop (Ctrl-C, SIGTERM)."""
        self._server.run()

    def start(self) -> None:
        """Serve in a background thread; returns once requests are accepted."""
        self._thread = threading.Thread(target=self._server.run, name=SERVER_THREAD, daemon=True)
        self._thread.start()

        def accepting() -> bool:
            if not self._thread.is_alive():
                raise RuntimeError(f"the app did not start on {self.url}")
            return self._server.started

        try:
            wait_until(accepting, START_TIMEOUT_S, f"the app to start on {self.url}", interval=0.05)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop serving (the lifespan closes the app) and wait for the server thread."""
        self.app.end_streams()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
