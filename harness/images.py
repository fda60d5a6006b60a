"""Images: the base image (debootstrap + docker import when no registry serves one) and task images."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker.errors

from harness.errors import UserError
from harness.image_builder import BuildFailed, build, hint, image_builder
from harness.sandbox import LABEL, docker_client

BASE_IMAGE = "cwm-eval/base:bookworm"
BASE_PACKAGES = [
    "python3", "python3-pip", "python3-venv", "python3-pytest", "git", "tmux", "patch",
    "procps", "ca-certificates",
]
HASH_LABEL = "cwm-eval.context-hash"
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_PATH_IN_IMAGE = "/usr/local/share/cwm-eval/ca-bundle.crt"


def image_exists(name: str) -> bool:
    try:
        docker_client().images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def bootstrap_base(name: str = BASE_IMAGE, suite: str = "bookworm", ca_bundle: Path | None = DEFAULT_CA_BUNDLE,
                   force: bool = False, log=print) -> str:
    """Build the base image from Debian's archive with debootstrap; reuse it when present."""
    if image_exists(name) and not force:
        log(f"{name} is present; reusing it")
        return name
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is not installed: run `apt-get install -y debootstrap` (as root)")
    with tempfile.TemporaryDirectory(prefix="cwm-eval-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {suite} into {rootfs} (about a minute)")
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", suite, str(rootfs)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"debootstrap failed: {proc.stdout[-300:]}{proc.stderr[-300:]}".replace("\n", " "))
        _install_ca_bundle(rootfs, ca_bundle)
        log(f"docker import -> {name}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        changes = [
            "--change", f"ENV SSL_CERT_FILE={CA_PATH_IN_IMAGE} PIP_CERT={CA_PATH_IN_IMAGE} "
                        f"REQUESTS_CA_BUNDLE={CA_PATH_IN_IMAGE} UV_NATIVE_TLS=1 "
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8",
            "--change", f"LABEL {LABEL}=1",
            "--change", 'CMD ["bash"]',
        ]
        subprocess.run(["docker", "import", *changes, "-", name], stdin=tar.stdout, check=True,
                       capture_output=True)
        tar.wait()
    return name


def _install_ca_bundle(rootfs: Path, ca_bundle: Path | None) -> None:
    """Trust the host's CA bundle inside the image, so TLS-intercepting proxies work."""
    target = rootfs / CA_PATH_IN_IMAGE.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = ca_bundle if ca_bundle and ca_bundle.exists() else rootfs / "etc/ssl/certs/ca-certificates.crt"
    shutil.copyfile(source, target)


def context_hash(context: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_image(context: Path, tag: str, log=print) -> str:
    """Build `tag` from a folder with a Dockerfile, rebuilt only when the folder's content changed. The one build
    call of every suite: BuildKit where there is one, else the legacy builder (harness/image_builder.py)."""
    wanted = context_hash(context)
    try:
        if docker_client().images.get(tag).labels.get(HASH_LABEL) == wanted:
            return tag
    except docker.errors.ImageNotFound:
        pass
    builder = image_builder()
    log(f"building {tag} with {builder.describe()}")
    try:
        build(builder, context, tag, {LABEL: "1", HASH_LABEL: wanted})
    except BuildFailed as exc:
        dockerfile = (context / "Dockerfile").read_text(errors="replace")
        raise UserError(f"building {tag} from {context}/Dockerfile failed: {exc}"
                        f"{hint(dockerfile, str(exc), builder)}") from None
    return tag


def list_images() -> list[dict]:
    rows = []
    for image in docker_client().images.list(filters={"label": LABEL}):
        for tag in image.tags or ["<untagged>"]:
            rows.append({"tag": tag, "id": image.short_id, "size_mb": round(image.attrs["Size"] / 1e6, 1),
                         "created": image.attrs["Created"][:19]})
    return sorted(rows, key=lambda r: r["tag"])


def prune_images(keep_base: bool = True) -> list[str]:
    """Remove the task images we built (and the base image unless kept)."""
    removed = []
    for row in list_images():
        if keep_base and row["tag"] == BASE_IMAGE:
            continue
        try:
            docker_client().images.remove(row["tag"] if row["tag"] != "<untagged>" else row["id"], force=True)
            removed.append(row["tag"])
        except docker.errors.APIError:
            pass
    return removed
