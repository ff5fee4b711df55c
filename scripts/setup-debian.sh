#!/usr/bin/env bash
# Installs what bevy_nacre needs on a fresh Debian/Ubuntu machine: the system libraries Bevy
# links against, Xvfb and Mesa's software Vulkan (for the rendering tests and headless runs), and
# a Rust toolchain if there is none. Safe to run again; it skips what is already there.
set -euo pipefail

packages=(build-essential pkg-config libasound2-dev libudev-dev libwayland-dev libxkbcommon-dev
  libx11-dev libxcursor-dev libxi-dev libxrandr-dev
  xvfb xauth mesa-vulkan-drivers libvulkan1 curl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "Installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
