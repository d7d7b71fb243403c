"""eSpeak NG speech synthesis through ctypes, from the pip package ``espeakng-loader``.

The package ships ``libespeak-ng.so`` and its ``espeak-ng-data`` folder (voices, dictionaries), so
speech is made offline with nothing but pip. The library keeps one global synthesizer per process;
``synthesize`` drives it synchronously and collects the 16-bit samples its callback hands over.
"""

from __future__ import annotations

import ctypes
import threading
from functools import lru_cache

import numpy as np

from genzoo.core.errors import GenzooError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}  # espeak_PARAMETER
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LOCK = threading.Lock()  # one global synthesizer in the library


class _Engine:
    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as e:
            raise GenzooError("spoken-digits needs the espeakng-loader package (pip install espeakng-loader)") from e
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as e:
            raise GenzooError(f"cannot load eSpeak NG from espeakng-loader ({e}); reinstall espeakng-loader") from e
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise GenzooError("eSpeak NG failed to initialise; reinstall espeakng-loader")
        self.chunks: list[np.ndarray] = []

        def collect(wav, n, events):
            if n > 0 and wav:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(collect)  # kept referenced: the library holds a raw pointer to it
        lib.espeak_SetSynthCallback(self._callback)


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def sample_rate() -> int:
    """The synthesizer's native rate (22050 Hz for eSpeak NG)."""
    return _engine().rate


def synthesize(text: str, voice: str, *, rate: int = 175, pitch: int = 50, pitch_range: int = 50, seed: int = 0) -> np.ndarray:
    """``text`` spoken by ``voice`` (e.g. "en-us+f2") as float32 samples in [-1, 1] at ``sample_rate()``.
    ``rate`` in words per minute, ``pitch`` and ``pitch_range`` 0..100. The synthesizer draws random
    numbers (jitter, noise sources); ``seed`` fixes them, so the same call gives the same samples."""
    eng = _engine()
    with _LOCK:
        if eng.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise GenzooError(f"eSpeak NG has no voice {voice!r}")
        for name, value in (("rate", rate), ("pitch", pitch), ("range", pitch_range), ("volume", 100)):
            eng.lib.espeak_SetParameter(_PARAM[name], int(value), 0)
        eng.chunks = []
        eng.lib.espeak_ng_SetRandSeed(int(seed))
        data = text.encode() + b"\0"
        if eng.lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None) != 0:
            raise GenzooError(f"eSpeak NG could not speak {text!r} with voice {voice!r}")
        eng.lib.espeak_Synchronize()
        samples = np.concatenate(eng.chunks) if eng.chunks else np.zeros(0, np.int16)
    return samples.astype(np.float32) / 32768.0
