"""Invoke entry point of the sandbox: wires the task collections of `sandboxctl.tasks`.

Run `invoke --list` for the tasks and `invoke --help TASK` for a task's arguments.
The logic lives in `sandboxctl/`, where it is unit-tested; this file only wires.
"""

from invoke.collection import Collection

from sandboxctl.tasks import (
    bench,
    devcontainer,
    host,
    images,
    kube,
    machine,
    model,
    plan,
    runs,
    runview,
    scaffold,
    stack,
    workspace,
)
from sandboxctl.tasks import eval as evaluation
from sandboxctl.tasks._task import name_tasks

ns = Collection()
for module in (host, machine, model, bench, devcontainer, kube, runs, workspace):
    ns.add_collection(Collection.from_module(module))
for viewer in (runview.view, runview.serve):  # runs.view, runs.serve
    ns.collections["runs"].add_task(viewer)
ns.add_collection(Collection("images", images.base, stack.build))
ns.add_collection(Collection("scaffold", scaffold.new))
for collection in plan.collections():  # plan.check, notes.add, issue.log, issue.resolve
    ns.add_collection(collection)
for top_level in (stack.up, stack.down, stack.ps, stack.logs, stack.run, stack.e2e, stack.demo):
    ns.add_task(top_level)
ns.add_task(host.doctor, "doctor")
ns.add_task(plan.milestones)
ns.add_task(evaluation.evaluate, "eval")
ns.configure({"plan": {"max_open_days": 14}})
name_tasks(ns)  # each task's error line starts with the name typed: `machine.init: ...`
