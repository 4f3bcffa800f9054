"""Information estimators, all in bits, pure and jit/vmap-able.

One module per estimator, each holding its math, its adapter (``compute(ctx, cfg)``), its check
and its ``ESTIMATORS`` registration: :mod:`binning`, :mod:`knn`, :mod:`kernel`, the weight-noise
channel :mod:`channel`, sample propagation for noisy networks :mod:`sp`, exact counts of quantized
layers :mod:`exact`, the matrix-based Renyi entropy :mod:`renyi` and sliced mutual information
:mod:`sliced` (for wide layers), the variational lower bounds InfoNCE and NWJ :mod:`variational`.
Shared parts: :mod:`base` (the context an estimator sees, its registry entry),
:mod:`counting` (the exact pattern-counting engine), :mod:`knn_search` (k-th neighbours),
:mod:`_common` (distances, blocking, checks), :mod:`layer_features` (what an estimator sees of a
very wide layer), and the exact information-bottleneck frontier of a discrete p(x, y)
:mod:`ib_bound`. Importing this package registers every built-in estimator. Rows of ``t`` ``(n, d)`` are the
representations of n distinct inputs, X uniform over them: H(X) = log2 n.
"""

from ib_jax.estimators._common import check_finite, pad_layers, sq_distances, to_bits
from ib_jax.estimators.base import Estimator, EvalContext, register_estimator
from ib_jax.estimators.binning import (
    bin_codes,
    binned_conditional_entropy_x,
    binned_entropy,
    binned_information,
    binned_mutual_information,
    n_bins_for_width,
    whole_run_range,
)
from ib_jax.estimators.channel import (
    channel_information_from_samples,
    noise_channel_information,
    perturbed_layers,
)
from ib_jax.estimators.counting import host_sort, information_from_codes, miller_madow_correction
from ib_jax.estimators.exact import exact_information, quantized_codes
from ib_jax.estimators.ib_bound import discrete_mutual_information, frontier_i_ty_at, ib_frontier
from ib_jax.estimators.kernel import kde_entropy_bounds, kde_mutual_information_x_bounds, kde_mutual_information_y
from ib_jax.estimators.knn import (
    knn_distances,
    knn_entropy,
    knn_mutual_information_discrete,
    ksg_mutual_information,
)
from ib_jax.estimators.layer_features import reduce_features, reduce_hidden, unit_subset
from ib_jax.estimators.renyi import (
    gaussian_gram,
    joint_gram,
    label_gram,
    normalized_gram,
    renyi_entropy,
    renyi_information,
    renyi_joint_entropy,
    renyi_mutual_information,
    renyi_width,
)
from ib_jax.estimators.sliced import random_directions, sliced_mutual_information, sliced_mutual_information_discrete
from ib_jax.estimators.sp import gaussian_entropy_bits, sp_mutual_information
from ib_jax.estimators.variational import (
    infonce_lower_bound,
    infonce_mutual_information,
    nwj_lower_bound,
    nwj_mutual_information,
    variational_mutual_information,
    variational_mutual_information_discrete,
)
from ib_jax.registry import import_parts

__all__ = [
    "EvalContext",
    "Estimator",
    "register_estimator",
    "reduce_features",
    "reduce_hidden",
    "unit_subset",
    "sq_distances",
    "host_sort",
    "bin_codes",
    "binned_conditional_entropy_x",
    "binned_entropy",
    "binned_information",
    "binned_mutual_information",
    "channel_information_from_samples",
    "check_finite",
    "discrete_mutual_information",
    "exact_information",
    "frontier_i_ty_at",
    "gaussian_entropy_bits",
    "ib_frontier",
    "information_from_codes",
    "kde_entropy_bounds",
    "kde_mutual_information_x_bounds",
    "kde_mutual_information_y",
    "knn_distances",
    "knn_entropy",
    "knn_mutual_information_discrete",
    "ksg_mutual_information",
    "miller_madow_correction",
    "n_bins_for_width",
    "noise_channel_information",
    "pad_layers",
    "perturbed_layers",
    "quantized_codes",
    "sp_mutual_information",
    "gaussian_gram",
    "joint_gram",
    "label_gram",
    "normalized_gram",
    "random_directions",
    "renyi_entropy",
    "renyi_information",
    "renyi_joint_entropy",
    "renyi_mutual_information",
    "renyi_width",
    "sliced_mutual_information",
    "sliced_mutual_information_discrete",
    "to_bits",
    "infonce_lower_bound",
    "infonce_mutual_information",
    "nwj_lower_bound",
    "nwj_mutual_information",
    "variational_mutual_information",
    "variational_mutual_information_discrete",
    "whole_run_range",
]

# every module of this package registers its part when imported: a new part is one new module
import_parts(__name__, __path__)
