"""The optimizers of G and D: Adam (the paper's), RMSProp (WGAN's) and optimistic Adam, as optax transforms.

Each transform maps a gradient tree to a *direction* u; the step applies params - lr * u with the
round's traced learning rate (`step_updates`), so the learning rate schedule never recompiles.

- 'adam': u = m_hat / (sqrt(v_hat) + eps) (optax `scale_by_adam`), betas per network.
- 'rmsprop' (Tieleman & Hinton; the optimizer WGAN was defined with, Arjovsky et al. 2017):
  nu = decay * nu + (1 - decay) * g^2, u = g / (sqrt(nu) + eps), nu starting at 0 (optax `scale_by_rms`,
  PyTorch's RMSprop).
- 'optimistic_adam' (Daskalakis et al. 2018, optax's optimistic gradient): r_t the Adam direction,
  u_t = (1 + o) r_t - o r_{t-1} with o = `optimism` (1 = the paper's 2 r_t - r_{t-1}); r_{-1} = r_0.
With lazy regularization D's betas (or RMSProp's decay) are raised to c = k / (k + 1)
(`LossConfig.adam_correction`). The extragradient step (`OptimizerConfig.extragradient`) is a way of
stepping with any of these, in `step_updates`. Every state is a pytree of float32 arrays and scalars:
checkpointed with the TrainState, so a resumed run continues exactly.
"""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "rmsprop", "optimistic_adam")


def direction(
    name: str, beta1: float, beta2: float, eps: float, optimism: float, correction: float = 1.0
) -> optax.GradientTransformation:
    """The transform of optimizer `name` (OPTIMIZERS) for one network.

    beta1, beta2: Adam's betas (beta2 is RMSProp's decay; beta1 unused there); eps: the denominator's
    epsilon; optimism: o of 'optimistic_adam'; correction: the exponent c applied to the betas.
    """
    if name == "rmsprop":
        return optax.scale_by_rms(decay=beta2**correction, eps=eps)
    adam = optax.scale_by_adam(b1=beta1**correction, b2=beta2**correction, eps=eps)
    if name == "optimistic_adam":
        return optax.chain(adam, optax.scale_by_optimistic_gradient(alpha=1.0, beta=optimism))
    return adam
