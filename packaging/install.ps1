<#
.SYNOPSIS
    Install diffstudio for this user on Windows, without cloning the repository.

.DESCRIPTION
    1. Makes a virtual environment in the user's data folder (what platformdirs calls
       user_data_dir("diffstudio")): %LOCALAPPDATA%\diffstudio\venv.
    2. Installs PyTorch: the CUDA build when nvidia-smi finds a GPU (the newest CUDA the driver
       supports), the CPU build otherwise; it says which, and -Torch cpu|cu118|cu126|cu128|cu130
       (or $env:DIFFSTUDIO_TORCH) changes it. On Windows PyPI's own torch is CPU-only, so the
       CUDA build always comes from download.pytorch.org.
    3. Installs diffstudio (from PyPI, or -From a wheel, an sdist or a folder).
    4. Makes a Start-menu shortcut with the diffstudio icon.
    5. Runs diffstudio --selftest.
    Run it again to upgrade; -Uninstall removes the environment and the shortcut.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File install.ps1
    powershell -ExecutionPolicy Bypass -File install.ps1 -Torch cpu -From dist\diffstudio-0.1.0-py3-none-any.whl
#>
[CmdletBinding()]
param(
    [string]$Torch = $env:DIFFSTUDIO_TORCH,
    [string]$From = "diffstudio",
    [string]$Python = "",
    [string]$Prefix = $env:DIFFSTUDIO_HOME,
    [switch]$NoMenu,
    [switch]$NoSelftest,
    [switch]$PrintTorch,
    [switch]$Uninstall
)
$ErrorActionPreference = "Stop"

function Say([string]$Text) { Write-Host "diffstudio install: $Text" }
function Die([string]$Text) { [Console]::Error.WriteLine("diffstudio install: error: $Text"); exit 2 }

if (-not $Prefix) { $Prefix = Join-Path $env:LOCALAPPDATA "diffstudio" }
$Venv = Join-Path $Prefix "venv"
$Command = Join-Path $Venv "Scripts\diffstudio.exe"
$StartMenu = Join-Path ([Environment]::GetFolderPath("Programs")) "diffstudio.lnk"

if ($Uninstall) {
    if (Test-Path $StartMenu) { Remove-Item $StartMenu }
    if (Test-Path $Venv) { Remove-Item -Recurse -Force $Venv }
    Say "removed $Venv and the Start-menu shortcut (settings and runs are kept)"
    exit 0
}

# -- Python -----------------------------------------------------------------------------------
function Test-Python([string[]]$Candidate) {
    try {
        $exe = $Candidate[0]
        $rest = @()
        if ($Candidate.Count -gt 1) { $rest = $Candidate[1..($Candidate.Count - 1)] }
        & $exe @rest -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" 2>$null
        return ($LASTEXITCODE -eq 0)
    } catch { return $false }
}
$PythonCommand = @()
if ($Python) {
    if (-not (Test-Python @($Python))) { Die "$Python is not Python 3.10 or newer" }
    $PythonCommand = @($Python)
} else {
    # The py launcher knows every installed Python; then whatever 'python' is on PATH.
    foreach ($candidate in @(@("py", "-3.13"), @("py", "-3.12"), @("py", "-3.11"), @("py", "-3.10"), @("python"))) {
        if (Test-Python $candidate) { $PythonCommand = $candidate; break }
    }
    if (-not $PythonCommand) {
        Die "no Python 3.10 or newer found; install one from python.org (tick 'Add python.exe to PATH') or pass -Python C:\path\to\python.exe"
    }
}

# -- which torch ------------------------------------------------------------------------------
$Builds = @("cpu", "cu118", "cu126", "cu128", "cu130", "default")
if ($Torch -and ($Builds -notcontains $Torch)) {
    Die "-Torch must be cpu, cu118, cu126, cu128, cu130 or default, not '$Torch'"
}
$Reason = "chosen with -Torch or DIFFSTUDIO_TORCH"
if (-not $Torch) {
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    $gpu = $null
    $header = ""
    if ($smi) {
        try {
            $gpu = (& nvidia-smi -L | Select-String -Pattern "^GPU" | Select-Object -First 1)
            $header = (& nvidia-smi | Out-String)
        } catch { $gpu = $null }
    }
    if ($gpu) {
        $match = [regex]::Match($header, "CUDA Version:\s*(\d+)\.(\d+)")
        $number = 0
        if ($match.Success) { $number = [int]$match.Groups[1].Value * 10 + [int]$match.Groups[2].Value }
        if ($number -ge 130) { $Torch = "cu130" }
        elseif ($number -ge 128) { $Torch = "cu128" }
        elseif ($number -ge 126) { $Torch = "cu126" }
        elseif ($number -ge 118) { $Torch = "cu118" }
        if ($Torch) {
            $Reason = "nvidia-smi found " + ($gpu.ToString() -replace " \(UUID.*", "")
        } else {
            $Torch = "cpu"
            $Reason = "nvidia-smi found a GPU, but its driver is older than CUDA 11.8: update the driver for GPU support"
        }
    } else {
        $Torch = "cpu"
        $Reason = "no NVIDIA GPU found: nvidia-smi is missing or lists none"
    }
}
$TorchIndex = ""
if ($Torch -ne "default") { $TorchIndex = "https://download.pytorch.org/whl/$Torch" }
Say "PyTorch build: $Torch ($Reason)"
Say "  to change it: install.ps1 -Torch cpu|cu118|cu126|cu128|cu130|default (packaging/README.md)"
if ($PrintTorch) {
    if ($TorchIndex) { Say "  index: $TorchIndex" } else { Say "  index: PyPI" }
    exit 0
}

# -- the environment --------------------------------------------------------------------------
Say "environment: $Venv"
New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
$exe = $PythonCommand[0]
$rest = @()
if ($PythonCommand.Count -gt 1) { $rest = $PythonCommand[1..($PythonCommand.Count - 1)] }
& $exe @rest -m venv $Venv
if ($LASTEXITCODE -ne 0) { Die "could not make the virtual environment $Venv" }
$VenvPython = Join-Path $Venv "Scripts\python.exe"
if ($TorchIndex) {
    # torch first, from its own index; diffstudio's install then finds it satisfied.
    & $VenvPython -m pip install --upgrade torch torchvision --index-url $TorchIndex
    if ($LASTEXITCODE -ne 0) { Die "installing torch from $TorchIndex failed" }
}
& $VenvPython -m pip install --upgrade $From
if ($LASTEXITCODE -ne 0) { Die "installing $From failed" }
if (-not (Test-Path $Command)) { Die "the install did not create $Command" }

# -- Start-menu shortcut ----------------------------------------------------------------------
if (-not $NoMenu) {
    $icon = (& $VenvPython -c "from diffstudio.resources import resource; print(resource('diffstudio.ico'))").Trim()
    $shell = New-Object -ComObject WScript.Shell
    $link = $shell.CreateShortcut($StartMenu)
    $link.TargetPath = $Command
    $link.WorkingDirectory = $env:USERPROFILE
    $link.IconLocation = $icon
    $link.Description = "diffstudio: a desktop studio for diffusion models"
    $link.Save()
    Say "Start-menu shortcut: $StartMenu"
}
Say "command: $Command (add $(Join-Path $Venv 'Scripts') to PATH to type 'diffstudio')"

if (-not $NoSelftest) {
    Say "self-test:"
    & $Command --selftest
    if ($LASTEXITCODE -ne 0) { Die "the self-test failed (above); see Troubleshooting in the README" }
}
Say "done: start diffstudio from the Start menu"
