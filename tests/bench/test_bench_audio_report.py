"""The bench table on audio data shows the listener's columns beside their real-data floors, and the
HTML page lets a reader hear each family's clips."""

import struct

from genzoo.bench.report import html_page, markdown


def _row(family, heard, fd, **extra):
    return {"family": family, "parameters": 1000, "train_steps": 2, "data_kind": "audio",
            "heard_as_asked": heard, "heard_as_asked_floor": 0.98, "fd_audio": fd, "fd_audio_floor": 113.7,
            "class_coverage": 0.1, "class_coverage_floor": 1.0, "audio_seconds_per_second": 3.5, **extra}


def test_audio_columns_and_floors_are_in_the_table():
    md = markdown([_row("diffusion", 0.18, 1623.0), _row("wavenet", 0.10, 4141.0, nll_bits_per_sample=6.78)],
                  "spoken-digits", {"minutes": 8})
    head = next(line for line in md.splitlines() if line.startswith("| family"))
    for title in ("heard as asked", "FD (listener)", "bits/sample", "audio s per s"):
        assert title in head
    floor = next(line for line in md.splitlines() if line.startswith("| real-vs-real floor"))
    assert "0.98" in floor and "113.7" in floor
    assert "| diffusion |" in md and "1623.0" in md and "6.780" in md


def test_html_embeds_the_wav_beside_the_spectrogram(tmp_path):
    png = tmp_path / "step_000002.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    wav = png.with_suffix(".wav")
    wav.write_bytes(b"RIFF" + struct.pack("<I", 4) + b"WAVE")
    page = html_page([_row("diffusion", 0.2, 100.0, samples_png=str(png))], "spoken-digits", {"steps": 2})
    assert "<audio controls src=\"data:audio/wav;base64," in page
    page = html_page([_row("diffusion", 0.2, 100.0)], "spoken-digits", {"steps": 2})
    assert "<audio" not in page
