"""Invoke entry point of the sandbox: wires the task collections of `sandboxctl.tasks`.

Run `invoke --list` for the tasks and `invoke --help TASK` for a task's arguments.
The logic lives in `sandboxctl/`, where it is unit-tested; this file only wires.
"""

from invoke.collection import Collection

from sandboxctl.tasks import scaffold

ns = Collection()
ns.add_collection(Collection("scaffold", scaffold.new))
ns.add_task(scaffold.demo)
