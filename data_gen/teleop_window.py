"""The teleop window (pygame): scene view with the goal, the policy's cameras, a status line; input.

Kept apart from the session logic so that tests and headless machines never need a display: tests run
it with SDL's dummy video driver.
"""

from __future__ import annotations

import math
import os

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Drake's VTK renderer has already made its own GL context current on this display (EGL) when the
# window opens; SDL's GLX-accelerated window surface then dies with BadAccess on X_GLXMakeCurrent
# (seen under Xvfb with Mesa). The window is a plain 2-D surface: SDL needs no GL for it.
os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", "0")
import pygame  # noqa: E402

from data_gen.teleop_session import TeleopInput, TeleopSession  # noqa: E402
from pushing_sim.scene import VIEWER_CAMERA, pixel_to_table, table_to_pixel  # noqa: E402

KEYS = {pygame.K_SPACE: "record", pygame.K_s: "save", pygame.K_d: "discard", pygame.K_r: "reset",
        pygame.K_q: "quit", pygame.K_ESCAPE: "quit"}
GAMEPAD_BUTTONS = {0: "record", 1: "discard", 2: "save", 3: "reset"}  # A, B, X, Y on most pads
GAMEPAD_SPEED = 0.15  # m/s at full stick
STATUS_HEIGHT = 56
MARGIN = 8


class WindowError(RuntimeError):
    """No window could be opened (e.g. no display)."""


class PygameView:
    """Draws the session: scene view (left), policy cameras (right), status lines (bottom)."""

    def __init__(self, env, scale: int = 2):
        try:
            pygame.display.init()
            pygame.font.init()
            self.view_size = env.unwrapped.sim.render_view().shape[0]
            cameras = env.unwrapped.sim.camera_names
            self.camera_size = env.unwrapped.domain.render.image_size * scale
            width = self.view_size + self.camera_size + 3 * MARGIN
            height = max(self.view_size, len(cameras) * (self.camera_size + MARGIN)) + STATUS_HEIGHT + MARGIN
            self.screen = pygame.display.set_mode((width, height))
        except pygame.error as error:
            raise WindowError(f"cannot open the teleop window ({error}); run it on a desktop session") from None
        pygame.display.set_caption("ambient-push teleop")
        self.font = pygame.font.Font(None, 24)
        self.cameras = cameras

    def view_to_table(self, position) -> np.ndarray | None:
        """The table point under a window position, or None outside the scene view."""
        x, y = position[0] - MARGIN, position[1] - MARGIN
        if not (0 <= x < self.view_size and 0 <= y < self.view_size):
            return None
        return pixel_to_table(VIEWER_CAMERA, self.view_size, x, y)

    def draw(self, session: TeleopSession) -> None:
        self.screen.fill((30, 30, 34))
        view = session.env.render()
        self.screen.blit(pygame.surfarray.make_surface(view.swapaxes(0, 1)), (MARGIN, MARGIN))
        column, row = table_to_pixel(VIEWER_CAMERA, self.view_size, session.target)
        pygame.draw.circle(self.screen, (255, 255, 255), (MARGIN + column, MARGIN + row), 6, width=2)
        left = self.view_size + 2 * MARGIN
        for i, name in enumerate(self.cameras):
            image = pygame.surfarray.make_surface(np.ascontiguousarray(session.obs["pixels"][name].swapaxes(0, 1)))
            image = pygame.transform.scale(image, (self.camera_size, self.camera_size))
            self.screen.blit(image, (left, MARGIN + i * (self.camera_size + MARGIN)))
        status = session.status()
        colour = {"idle": (200, 200, 200), "recording": (255, 90, 80), "done": (110, 230, 120)}[status.state]
        top = self.screen.get_height() - STATUS_HEIGHT
        line = (f"{status.state.upper():9}  {status.recorded_s:5.1f} s   to goal {1e3 * status.position_error:6.1f} mm "
                f"{math.degrees(status.angle_error):6.1f} deg   saved {status.saved}")
        self.screen.blit(self.font.render(line, True, colour), (MARGIN, top))
        help_line = f"{status.message}    [SPACE] record  [S] save  [D] discard  [R] reset  [Q] quit"
        self.screen.blit(self.font.render(help_line, True, (220, 220, 220)), (MARGIN, top + 24))
        pygame.display.flip()

    def screenshot(self, path) -> None:
        pygame.image.save(self.screen, str(path))


class PygameDevice:
    """Mouse (pusher follows the pointer over the scene view), keyboard, and an optional gamepad."""

    def __init__(self, view: PygameView):
        self.view = view
        pygame.joystick.init()
        self.pad = pygame.joystick.Joystick(0) if pygame.joystick.get_count() else None

    def poll(self) -> TeleopInput:
        commands: set[str] = set()
        target, delta = None, None
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                commands.add("quit")
            elif event.type == pygame.KEYDOWN and event.key in KEYS:
                commands.add(KEYS[event.key])
            elif event.type == pygame.JOYBUTTONDOWN and event.button in GAMEPAD_BUTTONS:
                commands.add(GAMEPAD_BUTTONS[event.button])
            elif event.type == pygame.MOUSEMOTION:
                target = self.view.view_to_table(event.pos)
        if self.pad is not None:
            stick = np.array([self.pad.get_axis(0), -self.pad.get_axis(1)])
            if np.linalg.norm(stick) > 0.15:  # dead zone
                delta = GAMEPAD_SPEED * 0.1 * stick
        return TeleopInput(target=target, delta=delta, commands=commands)
