"""Class-conditional GAN (AC-GAN trained with WGAN-GP) and unrestricted adversarial examples.

==================  ====================================================  ==========================
module              holds                                                 paper
==================  ====================================================  ==========================
``nets``            generator (conditional BatchNorm), critic + aux head  Gulrajani et al. 2017;
                                                                          Odena et al. 2017
``training``        gradient penalty, the two-optimiser loop, resumable   Gulrajani et al. 2017
                    state
``quality``         samples, per-class accuracy of classifiers on them,   (the CS236 study)
                    class grid
``latent``          latent optimisation: unrestricted adversarial         Song et al. 2018
                    examples
``augment``         training-batch mixing with generated images           (the CS236 study)
==================  ====================================================  ==========================

The GAN's images live in [-1, 1] (tanh); classifiers always take pixels in [0, 1]
(:func:`to_pixels`). References: Odena, Olah & Shlens 2017, "Conditional image synthesis with
auxiliary classifier GANs" (ICML); Gulrajani et al. 2017, "Improved training of Wasserstein GANs"
(NeurIPS); Song, Shu, Kushman & Ermon 2018, "Constructing unrestricted adversarial examples with
generative models" (NeurIPS).
"""
from .augment import GeneratedMixLoss, gan_maker, unrestricted_maker
from .latent import UnrestrictedResult, closest_wrong_class_loss, success, unrestricted_attack, unrestricted_batches
from .nets import AuxClassifier, ConditionalBatchNorm2d, Critic, Generator, check_labels, from_pixels, to_pixels
from .quality import balanced_labels, class_grid, generate, sample_quality
from .training import ACGANState, gradient_penalty, train_acgan

__all__ = ["Generator", "Critic", "AuxClassifier", "ConditionalBatchNorm2d", "to_pixels", "from_pixels", "check_labels",
           "gradient_penalty", "ACGANState", "train_acgan", "generate", "sample_quality", "class_grid",
           "balanced_labels", "unrestricted_attack", "unrestricted_batches", "UnrestrictedResult",
           "closest_wrong_class_loss", "success", "GeneratedMixLoss", "gan_maker", "unrestricted_maker"]
