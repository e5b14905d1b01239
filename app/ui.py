"""The Gradio interface over `ClassifierService`, the feedback publisher and the model registry.

HTTP API (gradio_client), stable names:
- `/predict` (image file) -> (probabilities as a `gr.Label` value, latency in ms)
- `/feedback` (image file, label) -> message; the label is an existing class or a new one
- `/publish` () -> message
- `/served_model` () -> markdown describing the model being served
Errors (bad image, bad label, no model yet) come back as `gr.Error` messages; nothing is stored for them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pandas as pd

from app.guard import Access, Refused, client_id
from app.labels import InvalidLabel
from app.model_holder import NoModelYet
from app.publisher import AutoPublisher, Publisher
from app.quality import CONFIDENCE_BINS, Agreement, QualityThreshold
from app.registry import model_history
from app.service import ClassifierService, Prediction
from classifier.images import InvalidImage, sha256_bytes

log = logging.getLogger(__name__)

_USER_ERRORS = (InvalidImage, InvalidLabel, NoModelYet, Refused)
# The UI's internal events: left out of the API docs (and of `Client.view_api()`) but, like every event the page
# triggers, still reachable over HTTP; only the named endpoints above are the API.
_HIDDEN = "undocumented"


class ClassifierUI:
    def __init__(
        self,
        service: ClassifierService,
        publisher: Publisher,
        *,
        model_project: str,
        auto_publisher: AutoPublisher | None = None,
        access: Access | None = None,
        threshold: QualityThreshold | None = None,
    ):
        self.service = service
        self.publisher = publisher
        self.model_project = model_project
        self.auto_publisher = auto_publisher
        self.access = access or Access(login=None)
        self.threshold = threshold or QualityThreshold()

    # -- handlers (each one an event of the Blocks below) ----------------------------------------------------

    def predict(self, path: str | None, request: gr.Request) -> tuple[dict[str, float], float, Prediction, object]:
        """The prediction, and the image as the model sees it (decoded once, EXIF-rotated, reduced for display)."""
        try:
            prediction, preview = self.service.predict_with_preview(_read_upload(path), _client(request))
        except _USER_ERRORS as exc:
            raise gr.Error(str(exc)) from None
        return prediction.probabilities, round(prediction.latency_ms, 1), prediction, preview

    def predict_api(self, path: str | None, request: gr.Request) -> tuple[dict[str, float], float]:
        probabilities, latency_ms, _, _ = self.predict(path, request)
        return probabilities, latency_ms

    def feedback(self, path: str | None, label: str | None, prediction: Prediction | None, request: gr.Request) -> str:
        data = _read_upload(path)
        try:
            result = self.service.submit_feedback(
                data, label or "", prediction=prediction, original_name=Path(path).name, client=_client(request)
            )
        except _USER_ERRORS as exc:
            raise gr.Error(str(exc)) from None
        item = result.item
        if not result.created:
            return f"This image was already stored as **{item.label}** ({item.created_at}); nothing changed."
        return f"Stored as **{item.label}** (the model said {item.prediction}). Thank you!"

    def confirm(self, path: str | None, prediction: Prediction | None, request: gr.Request) -> str:
        """Store the image under the class the model predicted for it."""
        data = _read_upload(path)
        if prediction is None or prediction.sha256 != sha256_bytes(data):
            # The prediction on screen belongs to an earlier upload (this one failed or is still running).
            raise gr.Error("Wait for the prediction of this image before confirming it.")
        return self.feedback(path, prediction.top, prediction, request)

    def publish(self, request: gr.Request | None = None) -> str:
        try:
            self.access.check_manager(request.username if request is not None else None)
        except Refused as exc:
            raise gr.Error(str(exc)) from None
        try:
            versions = self.publisher.publish_pending()
        except Exception as exc:
            log.exception("Publishing failed")
            raise gr.Error(f"Publishing failed; the items stay pending and will be retried. ({exc})") from None
        if not versions:
            return "Nothing to publish."
        return f"Published as dataset version(s) {', '.join(versions)}."

    def served_model(self) -> str:
        served = self.service.holder.current()
        if served is None:
            return "**No model is being served yet.** Waiting for a published model with the serving tag."
        checkpoint = served.checkpoint
        lines = [
            f"**Model** `{served.model_id}` ({served.name}), loaded {served.loaded_at}",
            f"**Classes:** {', '.join(served.classes)}",
            f"**Backbone:** {checkpoint.backbone} · **dataset version:** `{checkpoint.dataset_id}`",
        ]
        if checkpoint.metrics:
            lines.append("**Metrics:** " + _format_metrics(checkpoint.metrics))
        return "\n\n".join(lines)

    def review_next(self, request: gr.Request, message: str = ""):
        """The least sure upload still to review: (image, what the model said, its sha256, empty label)."""
        review = self.service.review
        try:
            self.access.check_manager(request.username)
        except Refused as exc:
            return None, str(exc), None, ""
        if review is None:
            return (
                None,
                "The review queue is off: start the app with `--review-keep` to keep uncertain uploads.",
                None,
                "",
            )
        items = review.items()
        if not items:
            return None, f"{message}\n\nNothing to review.", None, ""
        item = items[0]
        image = self.service.decode(review.image_path(item).read_bytes())
        image.thumbnail((512, 512))
        confidence = item.probabilities[item.top]
        info = (
            f"{message}\n\nThe model `{item.model_id}` said **{item.top}** ({confidence:.0%}). "
            f"{len(items)} upload(s) to review. Type the right label and press Enter."
        )
        return image, info.strip(), item.sha256, ""

    def review_answer(self, sha256: str | None, label: str | None, request: gr.Request):
        review = self.service.review
        try:
            self.access.check_manager(request.username)
            item = review.get(sha256) if review is not None and sha256 else None
            if item is None:
                raise gr.Error("This upload is no longer in the review queue.")
            result = self.service.answer_review(item, label or "", client=_client(request))
        except _USER_ERRORS as exc:
            raise gr.Error(str(exc)) from None
        return self.review_next(request, f"Stored as **{result.item.label}**.")

    def review_skip(self, sha256: str | None, request: gr.Request):
        """Drop the upload from the queue without a label."""
        try:
            self.access.check_manager(request.username)
        except Refused as exc:
            raise gr.Error(str(exc)) from None
        if self.service.review is not None and sha256:
            self.service.review.remove(sha256)
        return self.review_next(request, "Skipped.")

    def label_choices(self):
        return gr.update(choices=self.service.label_choices())

    def feedback_stats(self) -> tuple[pd.DataFrame, str]:
        counts = self.service.store.label_counts()
        rows = [
            {"label": count.label, "state": state, "items": number}
            for count in counts
            for state, number in (("pending", count.pending), ("published", count.published))
            if number
        ]
        frame = pd.DataFrame(rows, columns=["label", "state", "items"])
        pending = sum(count.pending for count in counts)
        published = sum(count.published for count in counts)
        table = ["| label | pending | published |", "|---|---|---|"]
        table += [f"| {count.label} | {count.pending} | {count.published} |" for count in counts]
        summary = f"**Feedback:** {pending} pending, {published} published"
        if self.auto_publisher is not None and self.auto_publisher.last_error:
            summary += f"\n\nLast automatic publishing attempt failed: {self.auto_publisher.last_error}"
        return frame, summary + "\n\n" + "\n".join(table)

    def quality_stats(self) -> tuple[pd.DataFrame, str]:
        """Live quality: per model version, agreement of its predictions with the feedback on them; the
        confidence histogram of the model being served; a flag when agreement dropped below the threshold."""
        prediction_log = self.service.log
        served = self.service.holder.current()
        if prediction_log is None:
            return pd.DataFrame(columns=["confidence", "predictions"]), ""
        lines = [
            "| model | predictions | feedback | agreement | recent | unknown labels |",
            "|---|---|---|---|---|---|",
        ]
        alerts, histogram = [], [0] * CONFIDENCE_BINS
        for model_id in prediction_log.models():
            quality = prediction_log.quality(model_id, window=self.threshold.window)
            here = " (serving)" if served is not None and served.model_id == model_id else ""
            lines.append(
                f"| `{model_id}`{here} | {quality.predictions} | {quality.agreement.feedback} | "
                f"{_rate(quality.agreement)} | {_rate(quality.recent)} | {quality.unknown_labels} |"
            )
            if here:
                histogram = quality.confidence_histogram
                per_class = ", ".join(f"{label} {_rate(value)}" for label, value in sorted(quality.per_class.items()))
                if per_class:
                    lines.append(f"\n**Agreement per class** (`{model_id}`): {per_class}")
                alert = self.threshold.alert(quality)
                if alert is not None:
                    alerts.append(f"**⚠ {alert.message()}**")
        frame = pd.DataFrame(
            {"confidence": [f"{i / CONFIDENCE_BINS:.1f}" for i in range(CONFIDENCE_BINS)], "predictions": histogram}
        )
        return frame, "\n\n".join([*alerts, "\n".join(lines)])

    def registry_stats(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        served = self.service.holder.current()
        try:
            versions = self.publisher.versions()
            models = model_history(self.model_project)
        except Exception as exc:  # the server being away must not break the page
            log.exception("Reading the registry failed")
            raise gr.Error(f"Could not read datasets and models from ClearML: {exc}") from None
        version_rows = pd.DataFrame(
            [[v.id, v.version, v.created, ", ".join(v.parents) or "—", v.files_added] for v in versions],
            columns=["dataset version", "version", "created", "parents", "files added"],
        )
        model_rows = pd.DataFrame(
            [
                [
                    m.id,
                    m.name,
                    ", ".join(m.tags),
                    "yes" if m.published else "no",
                    "serving" if served is not None and served.model_id == m.id else "",
                    _format_metrics(m.metrics),
                ]
                for m in models
            ],
            columns=["model", "name", "tags", "published", "here", "metrics"],
        )
        return version_rows, model_rows

    # -- layout ----------------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        # delete_cache: uploads Gradio keeps in its cache are removed after an hour (the store has its own copy).
        with gr.Blocks(title="Pet classifier", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
            gr.Markdown("# Pet classifier\nUpload a photo, check the prediction, and correct it if needed.")
            prediction_state = gr.State(None)
            api_predict = gr.Button(visible=False)  # only the API triggers it
            with gr.Tab("Classify"):
                with gr.Row():
                    with gr.Column():
                        upload = gr.File(label="Image", type="filepath", elem_id="upload")
                        preview = gr.Image(label="As the model sees it", interactive=False, height=240)
                    with gr.Column():
                        label = gr.Label(label="Prediction", elem_id="prediction")
                        latency = gr.Number(label="Latency (ms)", interactive=False, elem_id="latency")
                        model_info = gr.Markdown(elem_id="served-model")
                with gr.Group():
                    gr.Markdown("### Is the prediction right?")
                    with gr.Row():
                        confirm_button = gr.Button("Yes, it is correct", elem_id="confirm")
                    with gr.Row():
                        class_choice = gr.Dropdown(label="No, it is this class", choices=[], elem_id="class")
                        class_button = gr.Button("Submit class", elem_id="submit-class")
                    with gr.Row():
                        new_label = gr.Textbox(
                            label="Or a new label (a-z, 0-9, _ and -, up to 32)", elem_id="new-label"
                        )
                        new_label_button = gr.Button("Submit new label", elem_id="submit-new-label")
                    feedback_message = gr.Markdown(elem_id="feedback-message")
            with gr.Tab("Review", elem_id="review-tab") as review_tab:
                review_sha = gr.State(None)
                with gr.Row():
                    review_image = gr.Image(label="Least sure upload", interactive=False, height=320)
                    with gr.Column():
                        review_info = gr.Markdown(elem_id="review-info")
                        review_label = gr.Textbox(label="Right label (Enter submits)", elem_id="review-label")
                        with gr.Row():
                            review_submit = gr.Button("Submit", elem_id="review-submit", variant="primary")
                            review_skip = gr.Button("Skip", elem_id="review-skip")
            with gr.Tab("Statistics", elem_id="statistics-tab") as statistics_tab:
                refresh_button = gr.Button("Refresh")
                counts_plot = gr.BarPlot(x="label", y="items", color="state", label="Feedback per class")
                counts_text = gr.Markdown(elem_id="feedback-counts")
                gr.Markdown("### Live quality of the served model")
                quality_text = gr.Markdown(elem_id="quality")
                confidence_plot = gr.BarPlot(
                    x="confidence", y="predictions", label="Top confidence of the served model's predictions"
                )
                publish_button = gr.Button("Publish pending feedback as a new dataset version", elem_id="publish")
                publish_message = gr.Markdown(elem_id="publish-message")
                gr.Markdown("### Dataset versions")
                versions_table = gr.Dataframe(interactive=False, wrap=True)
                gr.Markdown("### Models")
                models_table = gr.Dataframe(interactive=False, wrap=True)

            stats_outputs = [counts_plot, counts_text]
            quality_outputs = [confidence_plot, quality_text]
            registry_outputs = [versions_table, models_table]

            # The named endpoints first: an event whose api_name is already taken, even by a hidden event named
            # after the same function, is published under a suffixed name (`served_model_1`).
            demo.load(self.served_model, None, model_info, api_name="served_model")
            # The API's /predict returns (probabilities, latency); an upload in the page also gets the preview and
            # keeps the prediction for the feedback buttons, all from one decode.
            api_predict.click(self.predict_api, upload, [label, latency], api_name="predict")
            upload.upload(
                self.predict, upload, [label, latency, prediction_state, preview], api_visibility=_HIDDEN
            ).success(self.served_model, None, model_info, api_visibility=_HIDDEN)
            # Removing the image removes its prediction, so nothing on screen belongs to another image.
            upload.clear(
                lambda: (None, None, None, None),
                None,
                [label, latency, prediction_state, preview],
                api_visibility=_HIDDEN,
            )

            for event in (
                new_label_button.click(
                    self.feedback, [upload, new_label, prediction_state], feedback_message, api_name="feedback"
                ),
                class_button.click(
                    self.feedback, [upload, class_choice, prediction_state], feedback_message, api_visibility=_HIDDEN
                ),
                confirm_button.click(
                    self.confirm, [upload, prediction_state], feedback_message, api_visibility=_HIDDEN
                ),
            ):
                event.success(self.feedback_stats, None, stats_outputs, api_visibility=_HIDDEN).then(
                    self.label_choices, None, class_choice, api_visibility=_HIDDEN
                )

            publish_button.click(self.publish, None, publish_message, api_name="publish").then(
                self.feedback_stats, None, stats_outputs, api_visibility=_HIDDEN
            ).then(self.registry_stats, None, registry_outputs, api_visibility=_HIDDEN)
            for trigger in (refresh_button.click, statistics_tab.select):
                trigger(self.feedback_stats, None, stats_outputs, api_visibility=_HIDDEN).then(
                    self.quality_stats, None, quality_outputs, api_visibility=_HIDDEN
                ).then(self.registry_stats, None, registry_outputs, api_visibility=_HIDDEN)

            review_outputs = [review_image, review_info, review_sha, review_label]
            review_tab.select(self.review_next, None, review_outputs, api_visibility=_HIDDEN)
            for trigger in (review_label.submit, review_submit.click):
                trigger(self.review_answer, [review_sha, review_label], review_outputs, api_visibility=_HIDDEN)
            review_skip.click(self.review_skip, review_sha, review_outputs, api_visibility=_HIDDEN)

            demo.load(self.label_choices, None, class_choice, api_visibility=_HIDDEN)
            demo.load(self.feedback_stats, None, stats_outputs, api_visibility=_HIDDEN)
            gr.Timer(5).tick(self.served_model, None, model_info, api_visibility=_HIDDEN)
        return demo


def _client(request: gr.Request | None) -> str | None:
    if request is None:  # called directly, not through Gradio
        return None
    return client_id(request.username, request.client.host if request.client else None)


def _read_upload(path: str | None) -> bytes:
    if not path:
        raise gr.Error("Upload an image first.")
    return Path(path).read_bytes()


def _rate(agreement: Agreement) -> str:
    return "—" if agreement.rate is None else f"{agreement.rate:.0%} ({agreement.agreed}/{agreement.feedback})"


def _format_metrics(metrics: dict) -> str:
    """The scalar metrics, briefly; per-class tables and confusion matrices are left to the ClearML UI."""
    shown = []
    for key, value in sorted(metrics.items()):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        shown.append(f"{key}={round(value, 4) if isinstance(value, float) else value}")
    return ", ".join(shown)
