"""The runtimes phone apps use, driven from Python: MediaPipe and LiteRT's GPU.

Our TFLite files are checked against what runs them on phones, not only
against our own interpreter calls:

- `MediaPipeSegmenter`: MediaPipe Tasks' ImageSegmenter (the `mediapipe`
  package, the task graph Android and iOS apps run). It resizes the photo to
  the model's input itself (bilinear, no antialiasing) and returns the
  confidence mask at the photo's size.
- `compile_on_gpu`: LiteRT's `CompiledModel` with the GPU accelerator alone
  (WebGPU over Vulkan). On a machine without a GPU it runs on Mesa's software
  Vulkan driver, lavapipe (`.ci/fetch_lavapipe.sh` fetches it; point
  `LAVAPIPE_DIR` at the folder or call `use_lavapipe`).

Both are optional: each raises `RuntimeUnavailable` where its package or a
Vulkan driver is missing, so callers and tests can skip cleanly.

LiteRT's GPU accelerator crashes (segmentation fault) in a process that has
loaded TensorFlow (ai-edge-litert 2.3, TensorFlow 2.21), and importing
`keras_defusion` loads TensorFlow. `run_on_gpu` therefore compiles and runs
in a fresh Python process that loads this file alone; `compile_on_gpu` is for
processes without TensorFlow.
"""

import ctypes
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from keras_defusion.utils import native_stderr

from keras_defusion.errors import RuntimeUnavailable

LAVAPIPE_ENV = "LAVAPIPE_DIR"
_LIB_DIR = os.path.join("root", "usr", "lib", "x86_64-linux-gnu")
# The GPU delegate's own count, printed to native stderr while compiling.
_OP_COUNT = re.compile(
    r"(\d+) operations will run on the GPU, and the remaining (\d+) operations"
)


# --- MediaPipe -------------------------------------------------------------------


class MediaPipeSegmenter:
    """MediaPipe Tasks' ImageSegmenter over one of our TFLite files.

    Use as a context manager (MediaPipe holds native resources):

    ```python
    with MediaPipeSegmenter("model_int8.tflite") as segmenter:
        blur = segmenter.segment(rgb)  # float32 [H, W], 1 = blurred
    ```

    Args:
        model_path: a `.tflite` file with our metadata (float32 inputs need
            it: MediaPipe reads their normalisation from it).

    Raises:
        RuntimeUnavailable: `mediapipe` is not installed.
    """

    def __init__(self, model_path):
        try:
            import mediapipe
            from mediapipe.tasks import python as tasks
            from mediapipe.tasks.python import vision
        except ImportError as error:
            raise RuntimeUnavailable(
                f"MediaPipe is not installed ({error}); pip install mediapipe"
            ) from None
        self._mediapipe = mediapipe
        options = vision.ImageSegmenterOptions(
            base_options=tasks.BaseOptions(model_asset_path=os.fspath(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            output_confidence_masks=True,
            output_category_mask=True,
        )
        self._segmenter = vision.ImageSegmenter.create_from_options(options)
        self.labels = list(getattr(self._segmenter, "labels", []) or [])

    def segment_masks(self, photo):
        """Both masks MediaPipe returns for an RGB uint8 array [H, W, 3].

        Returns:
            `(confidence, category)`: float32 [H, W] blur probability, and
            uint8 [H, W], 0 where the confidence is above 0.5 (blurred) and
            255 elsewhere (MediaPipe's convention for one channel).
        """
        mp = self._mediapipe
        # MediaPipe copies the buffer as if contiguous: a strided view
        # (photo[:, ::-1]) would be read scrambled.
        data = np.ascontiguousarray(photo, dtype=np.uint8)
        if data.ndim != 3 or data.shape[-1] != 3:
            raise ValueError(f"expected an RGB array [H, W, 3], got {data.shape}")
        result = self._segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=data))
        # numpy_view() points into MediaPipe's memory: copy before it is freed.
        confidence = np.array(result.confidence_masks[0].numpy_view(), dtype=np.float32)
        category = np.array(result.category_mask.numpy_view(), dtype=np.uint8)
        return confidence.reshape(confidence.shape[:2]), category.reshape(category.shape[:2])

    def segment(self, photo):
        """The blur map (float32 [H, W], at the photo's size) of an RGB array."""
        return self.segment_masks(photo)[0]

    def close(self):
        self._segmenter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# --- LiteRT's GPU accelerator -----------------------------------------------------


def use_lavapipe(folder=None):
    """Points the Vulkan loader at a lavapipe folder from `.ci/fetch_lavapipe.sh`.

    Call before the first GPU compile. Without `folder`, `$LAVAPIPE_DIR` is
    used; with neither, nothing changes (a system Vulkan driver is used).

    Returns:
        The folder used, or None.
    """
    folder = folder or os.environ.get(LAVAPIPE_ENV)
    if not folder:
        return None
    icd = os.path.join(folder, "lvp_icd.json")
    if not os.path.isfile(icd):
        raise RuntimeUnavailable(
            f"{folder}: no lvp_icd.json; fetch lavapipe with .ci/fetch_lavapipe.sh {folder}"
        )
    os.environ["VK_ICD_FILENAMES"] = icd  # older loaders read only this one
    os.environ["VK_DRIVER_FILES"] = icd
    libs = os.path.join(folder, _LIB_DIR)
    # Loaded by absolute path, so that the accelerator's dlopen("libvulkan.so.1")
    # and lavapipe's own libdrm needs resolve to these without LD_LIBRARY_PATH.
    for name in ("libdrm.so.2", "libdrm_amdgpu.so.1", "libvulkan.so.1"):
        path = os.path.join(libs, name)
        if os.path.exists(path):
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    return folder


class CompiledTFLite:
    """A LiteRT `CompiledModel` with a numpy call.

    Attributes:
        fully_accelerated: every op runs on the requested accelerator.
        gpu_ops, cpu_ops: the GPU delegate's own op counts (None when it
            printed none, e.g. on the CPU or when fully accelerated).
        log: what LiteRT printed while compiling.
    """

    def __init__(self, model, fully_accelerated, log=""):
        self.model = model
        self.fully_accelerated = fully_accelerated
        self.log = log
        counts = _OP_COUNT.search(log)
        self.gpu_ops, self.cpu_ops = (int(counts[1]), int(counts[2])) if counts else (None, None)
        signature = list(model.get_signature_list())[0]
        names = model.get_signature_list()[signature]
        inputs = model.get_input_tensor_details(signature)
        outputs = model.get_output_tensor_details(signature)
        self.input_details = [inputs[name] for name in names["inputs"]]
        self.output_details = [outputs[name] for name in names["outputs"]]
        self._inputs = model.create_input_buffers(0)
        self._outputs = model.create_output_buffers(0)

    def __call__(self, *arrays):
        """Runs the model on arrays of its input dtypes; returns its outputs."""
        for buffer, details, array in zip(self._inputs, self.input_details, arrays):
            buffer.write(np.ascontiguousarray(array, dtype=details["dtype"]))
        self.model.run_by_index(0, self._inputs, self._outputs)
        return [
            buffer.read(int(np.prod(details["shape"])), details["dtype"]).reshape(details["shape"])
            for buffer, details in zip(self._outputs, self.output_details)
        ]


def _compiled_model_api():
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import GpuOptions
        from ai_edge_litert.options import Options
    except ImportError as error:
        raise RuntimeUnavailable(
            f"LiteRT's CompiledModel is not installed ({error}); pip install 'ai-edge-litert>=2.3'"
        ) from None
    return CompiledModel, HardwareAccelerator, GpuOptions, Options


def compile_on_cpu(path):
    """The TFLite file compiled by LiteRT for the CPU (XNNPACK)."""
    CompiledModel, accelerator, _, _ = _compiled_model_api()
    model = CompiledModel.from_file(os.fspath(path), hardware_accel=accelerator.CPU)
    return CompiledTFLite(model, model.is_fully_accelerated())


def compile_on_gpu(path, allow_cpu=False, float32=False):
    """The TFLite file compiled for LiteRT's GPU accelerator.

    Args:
        path: the `.tflite` file.
        allow_cpu: compile with the CPU as fallback for the ops the GPU
            refuses (then `fully_accelerated` tells whether any were);
            without it a file that does not fully run on the GPU raises.
        float32: compute in float32 on the GPU (default: its float16).

    Raises:
        RuntimeUnavailable: LiteRT or a Vulkan driver is missing.
        RuntimeError: some ops cannot run on the GPU (without `allow_cpu`).
    """
    CompiledModel, accelerator, GpuOptions, Options = _compiled_model_api()
    use_lavapipe()

    def compile_for(accelerators):
        options = Options(hardware_accelerators=accelerators,
                          gpu_options=GpuOptions(enforce_f32=float32))
        return CompiledModel.from_file(os.fspath(path), options=options)

    with native_stderr() as log:
        try:
            model, error = compile_for(accelerator.GPU), None
        except RuntimeError as failure:
            model, error = None, str(failure)
    if model is not None:
        return CompiledTFLite(model, model.is_fully_accelerated(), log.text)
    if "No adapters found" in log.text or "Couldn't load Vulkan" in log.text:
        raise RuntimeUnavailable(
            "no Vulkan driver for LiteRT's GPU accelerator; on a machine without a "
            "GPU fetch lavapipe with .ci/fetch_lavapipe.sh DIR and set LAVAPIPE_DIR=DIR"
        )
    if not allow_cpu or "not accelerated" not in error:
        raise RuntimeError(f"{path}: GPU compile failed: {error}\n{log.text[-2000:]}")
    with native_stderr() as fallback_log:
        model = compile_for(accelerator.GPU | accelerator.CPU)
    return CompiledTFLite(model, False, fallback_log.text + log.text)


@dataclasses.dataclass
class GpuRun:
    """What `run_on_gpu` measured.

    Attributes:
        fully_accelerated: every op ran on the GPU accelerator.
        gpu_ops, cpu_ops: the delegate's op counts where it printed them
            (only when some op was refused).
        gpu_seconds: median seconds of one GPU run (None unless timed).
        gpu_outputs: the model's first output for each input, on the GPU.
        cpu_outputs: the same from LiteRT on the CPU, for comparison.
    """

    fully_accelerated: bool
    gpu_ops: object
    cpu_ops: object
    gpu_seconds: object
    gpu_outputs: np.ndarray
    cpu_outputs: np.ndarray


def run_on_gpu(path, images, allow_cpu=True, float32=False, timeout=600, rounds=0):
    """Runs a TFLite file on LiteRT's GPU accelerator and on its CPU.

    Runs in a fresh process (see the module docstring), so it works from a
    process that has loaded TensorFlow.

    Args:
        path: the `.tflite` file.
        images: array [N, ...] of inputs in the file's input dtype and shape
            (batch 1 each).
        allow_cpu: let refused ops fall back to the CPU (then
            `fully_accelerated` is False) instead of raising.
        float32: float32 compute on the GPU (default: float16).
        timeout: seconds for the whole run.
        rounds: also time this many GPU runs of the first input, after one
            warm-up (`GpuRun.gpu_seconds`, the median).

    Raises:
        RuntimeUnavailable: no LiteRT `CompiledModel` or no Vulkan driver.
        RuntimeError: the GPU compile or run failed.
    """
    with tempfile.TemporaryDirectory() as folder:
        inputs = os.path.join(folder, "inputs.npy")
        result = os.path.join(folder, "result.npz")
        np.save(inputs, np.asarray(images))
        request = {"model": os.fspath(path), "inputs": inputs, "result": result,
                   "allow_cpu": allow_cpu, "float32": float32, "rounds": rounds}
        # Loads this file by path, under a bare `keras_defusion` package whose
        # __init__ (which loads TensorFlow) never runs; this file imports only
        # the package's TensorFlow-free modules (errors, utils).
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = (
            "import importlib.util, sys, types; "
            "package = types.ModuleType('keras_defusion'); "
            f"package.__path__ = [{package_dir!r}]; sys.modules['keras_defusion'] = package; "
            f"spec = importlib.util.spec_from_file_location('runtimes', {__file__!r}); "
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            "sys.exit(module._gpu_worker(sys.argv[1]))"
        )
        process = subprocess.run(
            [sys.executable, "-c", code, json.dumps(request)],
            capture_output=True, text=True, timeout=timeout,
        )
        if process.returncode == _UNAVAILABLE_EXIT:
            raise RuntimeUnavailable(process.stdout.strip().splitlines()[-1])
        if process.returncode != 0:
            raise RuntimeError(
                f"{path}: the GPU run failed (exit {process.returncode}):\n"
                f"{(process.stdout + process.stderr)[-3000:]}"
            )
        with np.load(result) as saved:
            summary = json.loads(str(saved["summary"]))
            return GpuRun(gpu_outputs=saved["gpu"], cpu_outputs=saved["cpu"], **summary)


_UNAVAILABLE_EXIT = 3


def _gpu_worker(request_json):
    """`run_on_gpu`'s other process: compile, run both ways, save the results."""
    request = json.loads(request_json)
    images = np.load(request["inputs"])
    try:
        gpu = compile_on_gpu(request["model"], request["allow_cpu"], request["float32"])
    except RuntimeUnavailable as error:
        print(error)
        return _UNAVAILABLE_EXIT
    cpu = compile_on_cpu(request["model"])
    gpu_outputs = np.stack([gpu(image[None])[0][0] for image in images])
    cpu_outputs = np.stack([cpu(image[None])[0][0] for image in images])
    times = []
    for _ in range(request.get("rounds", 0)):
        start = time.perf_counter()
        gpu(images[:1])
        times.append(time.perf_counter() - start)
    summary = {"fully_accelerated": bool(gpu.fully_accelerated),
               "gpu_ops": gpu.gpu_ops, "cpu_ops": gpu.cpu_ops,
               "gpu_seconds": statistics.median(times) if times else None}
    np.savez(request["result"], gpu=gpu_outputs, cpu=cpu_outputs,
             summary=json.dumps(summary))
    return 0
