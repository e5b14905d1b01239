"""API errors with the result codes the ClearML clients understand."""


class ApiError(Exception):
    """An error answered as ``{"meta": {result_code, result_subcode, result_msg}, "data": {}}``."""

    def __init__(self, code: int, subcode: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.subcode = subcode
        self.msg = msg


def bad_request(msg: str, subcode: int = 0) -> ApiError:
    return ApiError(400, subcode, msg)


def invalid_task(task_id) -> ApiError:
    return ApiError(400, 101, f"Invalid task id: {task_id}")


def invalid_task_status(msg: str) -> ApiError:
    return ApiError(400, 110, f"Invalid task status: {msg}")


def invalid_model(model_id) -> ApiError:
    return ApiError(400, 201, f"Invalid model id: {model_id}")


def invalid_project(project_id) -> ApiError:
    return ApiError(400, 401, f"Invalid project id: {project_id}")


def project_not_found(name) -> ApiError:
    return ApiError(400, 403, f"Project not found: {name}")


def invalid_queue(queue_id) -> ApiError:
    return ApiError(400, 701, f"Invalid queue id: {queue_id}")


def no_default_queue() -> ApiError:
    return ApiError(400, 707, "No queue is tagged as the default queue")


def not_unique(msg: str) -> ApiError:
    return ApiError(400, 801, f"Value is not unique: {msg}")


def missing_field(name: str) -> ApiError:
    return ApiError(400, 12, f"Missing required field: {name}")


def unauthorized(msg: str, subcode: int = 30) -> ApiError:
    return ApiError(401, subcode, msg)
