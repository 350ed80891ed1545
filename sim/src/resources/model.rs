//! Lambda's CPU model as numbers: how much CPU an environment of a given memory size gets, in
//! INIT and afterwards, and the CFS quota that gives it. Pure; [`super::cgroup`] writes the
//! result. The evidence behind each figure is in ADR 0010.

use std::time::Duration;

use crate::config::InitType;

use super::{InitCpu, ResourceModel};

/// At 1,769 MB a function has the equivalent of one vCPU (AWS, configuration-memory.html); the
/// share is proportional to memory below and above.
pub(crate) const MB_PER_VCPU: f64 = 1769.0;

/// INIT on demand ran on two unthrottled vCPUs in the measurements that exist (see ADR 0010).
const INIT_BOOST_VCPUS: f64 = 2.0;

/// Lambda Managed Instances give at least one vCPU per environment.
const MANAGED_MIN_VCPUS: f64 = 1.0;

/// The kernel's smallest CFS quota (`sched-bwc.rst`: 1 ms).
pub(crate) const MIN_QUOTA: Duration = Duration::from_millis(1);
/// The kernel's CFS period range (`sched-bwc.rst`: 1 ms to 1 s).
pub(crate) const MIN_PERIOD: Duration = Duration::from_millis(1);
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(1);

/// How much CPU one phase of an environment gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuProfile {
    /// vCPUs' worth of CPU time per period (0.072 at 128 MB).
    pub vcpus: f64,
    /// The CFS period.
    pub period: Duration,
    /// Unused quota one period may carry into the next (`cpu.cfs_burst_us`, `cpu.max.burst`).
    pub burst: Duration,
}

impl CpuProfile {
    /// The CFS quota per period: `period × vcpus`, at least the kernel's 1 ms.
    pub(crate) fn quota(&self) -> Duration {
        self.period.mul_f64(self.vcpus).max(MIN_QUOTA)
    }

    /// True when the kernel's minimum quota makes the share larger than asked for.
    pub(crate) fn rounded_up(&self) -> bool {
        self.period.mul_f64(self.vcpus) < MIN_QUOTA
    }
}

/// The CPU of an environment: during INIT, and for everything after (invocations, SnapStart
/// restore, shutdown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuPlan {
    pub init: CpuProfile,
    pub invoke: CpuProfile,
    /// INIT got the boost ([`InitCpu::Unthrottled`], or `auto` on demand).
    pub init_unthrottled: bool,
}

/// vCPUs' worth of CPU an on-demand, provisioned or SnapStart function gets: memory / 1,769 MB.
pub(crate) fn lambda_vcpus(memory_mb: u32) -> f64 {
    f64::from(memory_mb) / MB_PER_VCPU
}

/// vCPUs a Lambda Managed Instances environment gets: its memory divided by the capacity
/// provider's memory per vCPU, at least one.
pub(crate) fn managed_vcpus(memory_mb: u32, gib_per_vcpu: f64) -> f64 {
    (f64::from(memory_mb) / 1024.0 / gib_per_vcpu).max(MANAGED_MIN_VCPUS)
}

/// Whether INIT of `init_type` runs unthrottled under `choice`: `auto` boosts on-demand INIT
/// only (provisioned concurrency and SnapStart initialize ahead of requests, throttled; Managed
/// Instances have no separate INIT share).
pub(crate) fn init_unthrottled(choice: InitCpu, init_type: InitType) -> bool {
    match choice {
        InitCpu::Throttled => false,
        InitCpu::Unthrottled => init_type != InitType::LambdaManagedInstances,
        InitCpu::Auto => init_type == InitType::OnDemand,
    }
}

/// The CPU plan of an environment of `memory_mb` started as `init_type`.
pub(crate) fn cpu_plan(model: &ResourceModel, memory_mb: u32, init_type: InitType) -> CpuPlan {
    let share = match init_type {
        InitType::LambdaManagedInstances => managed_vcpus(memory_mb, model.managed_gib_per_vcpu),
        _ => lambda_vcpus(memory_mb),
    };
    let invoke = CpuProfile {
        vcpus: share,
        period: model.cpu_period,
        burst: model.cpu_burst,
    };
    let boosted = init_unthrottled(model.init_cpu, init_type);
    let init = if boosted {
        CpuProfile {
            vcpus: share.max(INIT_BOOST_VCPUS),
            ..invoke
        }
    } else {
        invoke
    };
    CpuPlan {
        init,
        invoke,
        init_unthrottled: boosted,
    }
}

/// Why a CPU period or burst cannot be used, if it cannot.
pub(crate) fn check_period(period: Duration, burst: Duration) -> Result<(), String> {
    if period < MIN_PERIOD || period > MAX_PERIOD {
        return Err(format!(
            "CPU period {} ms is outside the kernel's 1-1000 ms",
            period.as_secs_f64() * 1000.0
        ));
    }
    if burst > period {
        return Err(format!(
            "CPU burst {} ms is longer than the period {} ms",
            burst.as_secs_f64() * 1000.0,
            period.as_secs_f64() * 1000.0
        ));
    }
    Ok(())
}

/// `0.072 vCPU (1.45 ms per 20 ms)`.
pub(crate) fn describe(profile: &CpuProfile) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut s = format!(
        "{:.3} vCPU ({:.2} ms per {} ms",
        profile.vcpus,
        ms(profile.quota()),
        ms(profile.period)
    );
    if !profile.burst.is_zero() {
        s.push_str(&format!(", burst {} ms", ms(profile.burst)));
    }
    s.push(')');
    if profile.rounded_up() {
        s.push_str(", rounded up to the kernel's 1 ms minimum quota");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(init_cpu: InitCpu) -> ResourceModel {
        ResourceModel {
            init_cpu,
            ..ResourceModel::default()
        }
    }

    #[test]
    fn the_share_is_memory_over_1769_mb() {
        assert!((lambda_vcpus(1769) - 1.0).abs() < 1e-12);
        assert!((lambda_vcpus(128) - 0.072_357).abs() < 1e-6);
        assert!((lambda_vcpus(10_240) - 5.788_581).abs() < 1e-6);
    }

    #[test]
    fn the_quota_is_the_share_of_the_period() {
        let plan = cpu_plan(&model(InitCpu::Throttled), 128, InitType::OnDemand);
        assert_eq!(plan.invoke.period, Duration::from_millis(20));
        // 20 ms × 128 / 1769 = 1.447 ms.
        assert_eq!(plan.invoke.quota().as_micros(), 1_447);
        assert_eq!(plan.init, plan.invoke);
        assert!(!plan.init_unthrottled);
        let big = cpu_plan(&model(InitCpu::Throttled), 3538, InitType::OnDemand);
        assert_eq!(big.invoke.quota(), Duration::from_millis(40));
    }

    #[test]
    fn a_quota_under_the_kernel_minimum_is_rounded_up_and_said_so() {
        let m = ResourceModel {
            cpu_period: Duration::from_millis(10),
            ..model(InitCpu::Throttled)
        };
        let plan = cpu_plan(&m, 128, InitType::OnDemand);
        assert_eq!(plan.invoke.quota(), MIN_QUOTA);
        assert!(plan.invoke.rounded_up());
        assert!(describe(&plan.invoke).contains("rounded up"));
        assert!(
            !cpu_plan(&model(InitCpu::Throttled), 128, InitType::OnDemand)
                .invoke
                .rounded_up()
        );
    }

    #[test]
    fn auto_boosts_only_on_demand_init() {
        let on_demand = cpu_plan(&model(InitCpu::Auto), 128, InitType::OnDemand);
        assert!(on_demand.init_unthrottled);
        assert!((on_demand.init.vcpus - 2.0).abs() < 1e-12);
        assert!((on_demand.invoke.vcpus - lambda_vcpus(128)).abs() < 1e-12);
        for t in [InitType::ProvisionedConcurrency, InitType::SnapStart] {
            let plan = cpu_plan(&model(InitCpu::Auto), 128, t);
            assert!(!plan.init_unthrottled, "{t:?}");
            assert_eq!(plan.init, plan.invoke);
        }
        // Asked for, the boost applies to every init type but Managed Instances.
        let pc = cpu_plan(
            &model(InitCpu::Unthrottled),
            128,
            InitType::ProvisionedConcurrency,
        );
        assert!(pc.init_unthrottled);
        // Above 3,538 MB the share is more than the boost.
        let large = cpu_plan(&model(InitCpu::Auto), 5307, InitType::OnDemand);
        assert!((large.init.vcpus - lambda_vcpus(5307)).abs() < 1e-12);
    }

    #[test]
    fn managed_instances_get_memory_per_vcpu_and_at_least_one() {
        let m = model(InitCpu::Auto);
        let plan = cpu_plan(&m, 8192, InitType::LambdaManagedInstances);
        assert!((plan.invoke.vcpus - 4.0).abs() < 1e-12);
        assert_eq!(plan.init, plan.invoke);
        assert!(!plan.init_unthrottled);
        let small = cpu_plan(&m, 128, InitType::LambdaManagedInstances);
        assert!((small.invoke.vcpus - 1.0).abs() < 1e-12);
        let ratio8 = ResourceModel {
            managed_gib_per_vcpu: 8.0,
            ..m
        };
        let plan = cpu_plan(&ratio8, 32 * 1024, InitType::LambdaManagedInstances);
        assert!((plan.invoke.vcpus - 4.0).abs() < 1e-12);
    }

    #[test]
    fn periods_outside_the_kernel_range_are_refused() {
        assert!(check_period(Duration::from_millis(20), Duration::ZERO).is_ok());
        assert!(check_period(Duration::from_micros(500), Duration::ZERO).is_err());
        assert!(check_period(Duration::from_millis(1001), Duration::ZERO).is_err());
        let e = check_period(Duration::from_millis(20), Duration::from_millis(30)).unwrap_err();
        assert!(e.contains("burst"), "{e}");
    }

    #[test]
    fn descriptions_name_the_share_and_the_quota() {
        let plan = cpu_plan(&model(InitCpu::Throttled), 128, InitType::OnDemand);
        assert_eq!(describe(&plan.invoke), "0.072 vCPU (1.45 ms per 20 ms)");
    }
}
