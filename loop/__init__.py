"""The ClearML adapter: the one place where this project talks to a ClearML server.

    settings     names: project, dataset, tags, queues (each overridable by an environment variable)
    errors       StageError: a failure the user can fix; only entry points turn it into an exit code
    registry     the model registry: production lookup, promotion (compare-and-set), rollback, metadata, download
    lock         the server-side mutex that serialises promotions
    api          the shared REST client
    datasets     dataset versions: the newest, a local copy, a new (child) version
    stages       the stage runner: CLI, Task.init and connected parameters, literal scripts, task lookups
    sdk_private  every call into the clearml SDK's private API, pinned by tests/loop/test_sdk_private.py

The ML itself lives in `classifier/`, which knows nothing about ClearML; the stage tasks in `tasks/`, the pipeline,
the trigger, the dev stack and the app use ClearML only through this package.
"""
