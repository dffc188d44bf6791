"""Image commands: list, show, save, delete. Thin: parse, call the SDK, render."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.output import console, print_json, timestamp
from gpucloud.schemas.images import ImageOut

image_app = typer.Typer(help="Environments jobs and instances run in (--image NAME).",
                        no_args_is_help=True)

BUILD_STYLES = {"READY": "green", "BUILDING": "cyan", "FAILED": "bold red", "ABSENT": "dim"}


def versions(image: ImageOut) -> str:
    framework = (f"{image.framework} {image.framework_version}" if image.framework else "-")
    stack = f"{image.accelerator.upper()} {image.accelerator_version}".strip()
    return f"{framework}, {stack}" if stack else framework


@image_app.command("list")
def image_list(as_json: JsonFlag = False) -> None:
    """The catalogue's presets and your tenant's private images."""
    with client() as api:
        images = api.list_images()
    if as_json:
        print_json(images)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "KIND", "FRAMEWORK", "ACCELERATOR", "DESCRIPTION"):
        table.add_column(column, no_wrap=column != "DESCRIPTION")
    for image in images:
        framework = (f"{image.framework} {image.framework_version}" if image.framework
                     else "-")
        accelerator = f"{image.accelerator.upper()} {image.accelerator_version}".strip()
        table.add_row(image.name, image.kind.value, framework, accelerator or "-", image.title)
    console.print(table)


def _line(label: str, value: str) -> Text:
    return Text(f"{label:<13}", style="bold") + Text(value)


@image_app.command("show")
def image_show(
    name: Annotated[str, typer.Argument(help="A preset's name, or your image's name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """What an image holds and the state of its venv on each node that needed it."""
    with client() as api:
        image = api.get_image(name)
    if as_json:
        print_json(image)
        return
    console.print(_line("image", f"{image.name}  ({image.kind.value})"))
    console.print(_line("description", image.title))
    console.print(_line("versions", versions(image)))
    console.print(_line("installs", " ".join(image.requirements) or "nothing (a clean venv)"))
    if image.notes:
        console.print(_line("notes", image.notes))
    if image.id:
        console.print(_line("id", image.id))
        console.print(_line("base", image.base or "-"))
        console.print(_line("saved from", f"instance {image.source_instance_id} by "
                                          f"{image.created_by} at {timestamp(image.created_at)}"))
        size = f"{image.layer_files} files, {image.layer_bytes} bytes"
        console.print(_line("layer", size))
        console.print(_line("packages", " ".join(image.packages) or "-"))
    if not image.nodes:
        console.print(Text("not built on any node yet (built when a job first needs it)",
                           style="dim"))
        return
    console.print()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NODE", "STATE", "BUILDS", "FINISHED", "MESSAGE"):
        table.add_column(column, no_wrap=column != "MESSAGE")
    for node in image.nodes:
        table.add_row(node.node_id, Text(node.state.value, style=BUILD_STYLES[node.state.value]),
                      str(node.builds), timestamp(node.finished_at), node.message)
    console.print(table)


@image_app.command("save")
def image_save(
    instance: Annotated[str, typer.Argument(help="The instance's name or id.")],
    name: Annotated[str, typer.Argument(help="The new image's name.")],
    as_json: JsonFlag = False,
) -> None:
    """Save an instance's environment (its image plus what you pip-installed in it) as a
    private image of your tenant; then --image NAME on a job or instance."""
    with client() as api:
        image = api.save_image(instance, name)
    if as_json:
        print_json(image)
        return
    packages = ", ".join(image.packages) or "no pip-installed packages"
    console.print(f"image {image.name} saved ({image.id}) on {image.base}: {packages}",
                  markup=False)
    console.print(f"  use it: gpucloud run --image {image.name} -- python train.py",
                  markup=False)


@image_app.command("rebuild")
def image_rebuild(
    name: Annotated[str, typer.Argument(help="The image whose build failed.")],
    node: Annotated[str | None, typer.Option(help="Only on this node.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a FAILED image again once its cause is fixed (presets: operators)."""
    with client() as api:
        image = api.rebuild_image(name, node)
    if as_json:
        print_json(image)
        return
    building = [n.node_id for n in image.nodes if n.state.value == "BUILDING"]
    console.print(f"image {image.name}: building again on {', '.join(building) or '-'}; "
                  f"see gpucloud image show {image.name}", markup=False)


@image_app.command("delete")
def image_delete(
    name: Annotated[str, typer.Argument(help="Your image's name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """Delete a private image (jobs already running in it keep their venv)."""
    with client() as api:
        image = api.delete_image(name)
    if as_json:
        print_json(image)
        return
    console.print(f"image {image.name} deleted", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
