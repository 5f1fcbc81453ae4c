@_exported import DockerParallelCore
@_exported import LocalProvider
