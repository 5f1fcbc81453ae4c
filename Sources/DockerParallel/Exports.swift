// What `import DockerParallel` gives its users: the cluster (this module), and from the core a
// curated set — configuration, tasks and jobs, errors, and the provider and container
// protocols for extension authors. The core's queue, wire and process internals are `package`
// and stay out of sight; so does the rest of LocalProvider but its provider and container.

// Configuration and runtime state.
@_exported import struct DockerParallelCore.ClusterConfiguration
@_exported import struct DockerParallelCore.ClusterRuntime
@_exported import struct DockerParallelCore.Endpoint
@_exported import struct DockerParallelCore.Hardware
@_exported import struct DockerParallelCore.ServerEndpoints
@_exported import struct DockerParallelCore.ServerPassword
@_exported import enum DockerParallelCore.ServerStatus
@_exported import struct DockerParallelCore.WorkerNumbers

// Tasks and jobs.
@_exported import protocol DockerParallelCore.ParallelTask
@_exported import struct DockerParallelCore.TaskRegistry
@_exported import struct DockerParallelCore.CommandTemplate
@_exported import struct DockerParallelCore.ShellCommandLine
@_exported import struct DockerParallelCore.InputSource
@_exported import struct DockerParallelCore.ArgumentLayout
@_exported import struct DockerParallelCore.TaskSpec
@_exported import struct DockerParallelCore.JobID
@_exported import struct DockerParallelCore.JobOptions
@_exported import struct DockerParallelCore.JobStatus
@_exported import struct DockerParallelCore.TaskResult
@_exported import enum DockerParallelCore.TaskStatus
@_exported import struct DockerParallelCore.AttemptRecord
@_exported import struct DockerParallelCore.LeaseID
@_exported import enum DockerParallelCore.AttemptOutcome
@_exported import struct DockerParallelCore.ServerReport

// Errors.
@_exported import struct DockerParallelCore.DockerParallelError

// For extension authors: providers and containers.
@_exported import protocol DockerParallelCore.CloudProvider
@_exported import protocol DockerParallelCore.WorkerContainer
@_exported import struct DockerParallelCore.ClusterContext
@_exported import struct DockerParallelCore.StaticData
@_exported import struct DockerParallelCore.TransportSecurity
@_exported import enum DockerParallelCore.EnvironmentKey
@_exported import struct DockerParallelCore.ScalingPlan

// The embedded default provider and its container.
@_exported import class LocalProvider.LocalProvider
@_exported import struct LocalProvider.LocalProcessContainer
