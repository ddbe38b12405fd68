"""Example project plugin: cosine similarity between consecutive epochs' gradients.

Xu et al. (2020), cited by the DEBA paper, gate the batch size on how much the gradient direction
changes. Name this file in params.yaml (`deba.plugins: [plugins/grad_cosine.py]`) and add
`grad_cosine` to `deba.signals`; `deba plugins --plugin plugins/grad_cosine.py` lists it.

Cost: it keeps one float32 copy of the previous epoch's gradient (P floats), once per epoch.
"""

import torch

from deba_pipeline import Signal, hookimpl


class GradCosine(Signal):
    name = "grad_cosine"

    def compute(self, obs):
        current = [g.detach().float().clone() for g in obs.grads if g is not None]
        previous = self.state.get("previous")
        self.state["previous"] = current
        if previous is None:
            return None
        dot = sum(torch.dot(a.flatten(), b.flatten()) for a, b in zip(current, previous))
        norm_a = torch.sqrt(sum(a.square().sum() for a in current))
        norm_b = torch.sqrt(sum(b.square().sum() for b in previous))
        return float(dot / (norm_a * norm_b + 1e-8))


@hookimpl
def register_signals(register):
    register(GradCosine)
