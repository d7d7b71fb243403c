"""Every built-in family; importing this module registers them (see genzoo.registry)."""

from genzoo.models.base import Batch, BatchRandom, GenerativeModel, ModelConfig, Updater  # noqa: F401
from genzoo.models import vae  # noqa: F401
from genzoo.models import diffusion  # noqa: F401
from genzoo.models import pixelcnn  # noqa: F401
from genzoo.models import realnvp  # noqa: F401
from genzoo.models import glow  # noqa: F401
from genzoo.models import gpt  # noqa: F401
from genzoo.models import bert  # noqa: F401
from genzoo.models import ebm  # noqa: F401
from genzoo.models import gan  # noqa: F401
from genzoo.models import cyclegan  # noqa: F401
from genzoo.models import stylegan  # noqa: F401
from genzoo.models import vit  # noqa: F401
from genzoo.models import clip  # noqa: F401
from genzoo.models import t5  # noqa: F401
from genzoo.models import wavenet  # noqa: F401
from genzoo.models import tvae, ctgan, copula, tabddpm, privbayes  # noqa: F401  (tables)
