"""Kubernetes manifests of the sandbox, generated from its Compose model.

- :mod:`~sandboxctl.kube.convert`: the merged Compose project (``compose config --format
  json``) turned into Kubernetes objects: Deployments, Services, PersistentVolumeClaims,
  NetworkPolicies, the hardening as securityContext; :mod:`~sandboxctl.kube.job` the agent
  Job, :mod:`~sandboxctl.kube.overlay` the GPU overlay's patch.
- :mod:`~sandboxctl.kube.render`: the kustomize tree (``kube/base``, ``kube/overlays/cpu``,
  ``kube/overlays/cuda``, ``kube/job``) written from those objects, and the drift between
  a tree on disk and the Compose model (``plan.check``).
- :mod:`~sandboxctl.kube.validate`: every built manifest checked against the Kubernetes API
  schemas (``kubectl kustomize``, then ``kubernetes-validate``), offline.
- :mod:`~sandboxctl.kube.local`: the local proof: the CPU overlay played with ``podman kube
  play`` 4.3.1, adapted to what that version can play (docs/KUBERNETES.md);
  :mod:`~sandboxctl.kube.proof` runs it end to end with one agent task.
"""
