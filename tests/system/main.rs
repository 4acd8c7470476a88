//! System tests: real nats-server processes from nats.conf, real node processes, real redb files.

mod attacks;
mod audit;
mod cloud;
mod commands;
mod crash;
mod dfs;
mod faults;
mod followers;
mod guest;
mod harness;
mod instances;
mod media;
mod migration;
mod nodes_view;
mod permissions;
mod reads;
mod sessions;
mod shutdown;
mod up;
mod views;
