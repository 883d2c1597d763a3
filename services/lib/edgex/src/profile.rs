//! Device profiles in EdgeX's YAML format (v2/v3): `deviceResources` and `deviceCommands`.
//!
//! A profile file is written by a user or a vendor; anything in it may be wrong. Parsing
//! reports the first problem with the line it is on ("line 12: `valueType`: `Int17` is not an
//! EdgeX value type"), and checks what EdgeX checks when a profile is added: names present
//! and unique, a known value type and access mode on each resource, commands naming existing
//! resources.

use crate::schema::{boolean, fail, map, parsed, required, seq, strings, text, uint};
use crate::yaml::{self, Error, Node};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// EdgeX's value types (`properties.valueType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ValueType {
    Bool,
    String,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Binary,
    Object,
    BoolArray,
    StringArray,
    Uint8Array,
    Uint16Array,
    Uint32Array,
    Uint64Array,
    Int8Array,
    Int16Array,
    Int32Array,
    Int64Array,
    Float32Array,
    Float64Array,
}

const VALUE_TYPES: [(&str, ValueType); 26] = {
    use ValueType::*;
    [
        ("Bool", Bool),
        ("String", String),
        ("Uint8", Uint8),
        ("Uint16", Uint16),
        ("Uint32", Uint32),
        ("Uint64", Uint64),
        ("Int8", Int8),
        ("Int16", Int16),
        ("Int32", Int32),
        ("Int64", Int64),
        ("Float32", Float32),
        ("Float64", Float64),
        ("Binary", Binary),
        ("Object", Object),
        ("BoolArray", BoolArray),
        ("StringArray", StringArray),
        ("Uint8Array", Uint8Array),
        ("Uint16Array", Uint16Array),
        ("Uint32Array", Uint32Array),
        ("Uint64Array", Uint64Array),
        ("Int8Array", Int8Array),
        ("Int16Array", Int16Array),
        ("Int32Array", Int32Array),
        ("Int64Array", Int64Array),
        ("Float32Array", Float32Array),
        ("Float64Array", Float64Array),
    ]
};

impl ValueType {
    /// Parses EdgeX's name (case-insensitive, as EdgeX normalises it).
    pub fn from_name(name: &str) -> Option<ValueType> {
        VALUE_TYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, t)| t)
    }

    /// EdgeX's name for the type, as readings carry it.
    pub fn name(self) -> &'static str {
        VALUE_TYPES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("", |&(n, _)| n)
    }

    /// Whether values are integers (signed or not).
    pub fn is_integer(self) -> bool {
        use ValueType::*;
        matches!(
            self,
            Uint8 | Uint16 | Uint32 | Uint64 | Int8 | Int16 | Int32 | Int64
        )
    }

    /// Whether values are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, ValueType::Float32 | ValueType::Float64)
    }
}

/// Who may read and write a resource or command (`readWrite`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadWrite {
    /// `R`.
    Read,
    /// `W`.
    Write,
    /// `RW` or `WR`.
    ReadWrite,
}

impl ReadWrite {
    fn parse(text: &str) -> Option<ReadWrite> {
        match text {
            "R" => Some(ReadWrite::Read),
            "W" => Some(ReadWrite::Write),
            "RW" | "WR" => Some(ReadWrite::ReadWrite),
            _ => None,
        }
    }

    /// Whether reads are allowed.
    pub fn readable(self) -> bool {
        self != ReadWrite::Write
    }

    /// Whether writes are allowed.
    pub fn writable(self) -> bool {
        self != ReadWrite::Read
    }
}

/// `properties` of a device resource: the value's type and its transformations.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceProperties {
    /// `valueType`.
    pub value_type: ValueType,
    /// `readWrite`.
    pub read_write: ReadWrite,
    /// `units`.
    pub units: Option<String>,
    /// `minimum`: writes below it are refused.
    pub minimum: Option<f64>,
    /// `maximum`: writes above it are refused.
    pub maximum: Option<f64>,
    /// `defaultValue`: used by a write that gives no value.
    pub default_value: Option<String>,
    /// `mask`: ANDed with an integer reading.
    pub mask: Option<u64>,
    /// `shift`: shifts an integer reading (positive left, negative right).
    pub shift: Option<i32>,
    /// `scale`: multiplies a reading (divides a written value).
    pub scale: Option<f64>,
    /// `offset`: added to a reading (subtracted from a written value).
    pub offset: Option<f64>,
    /// `base`: a reading `v` becomes `base^v`.
    pub base: Option<f64>,
    /// `mediaType` (Binary resources).
    pub media_type: Option<String>,
}

/// A device resource: one value a device has.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceResource {
    /// `name`: unique in the profile.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `isHidden`: not exposed as a command.
    pub is_hidden: bool,
    /// `properties`.
    pub properties: ResourceProperties,
    /// `attributes`: protocol-specific, interpreted by the device service (e.g. Modbus's
    /// `primaryTable`, `startingAddress`), kept as written.
    pub attributes: Vec<(String, Node)>,
}

impl DeviceResource {
    /// The attribute `name` as text, if present and a scalar.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_str())
    }

    /// The attribute node `name` (for errors naming its line).
    pub fn attribute_node(&self, name: &str) -> Option<&Node> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// One resource a device command reads or writes.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceOperation {
    /// `deviceResource`: the resource's name.
    pub device_resource: String,
    /// `defaultValue`.
    pub default_value: Option<String>,
}

/// A device command: several resources read or written together.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceCommand {
    /// `name`: unique among resources and commands.
    pub name: String,
    /// `isHidden`.
    pub is_hidden: bool,
    /// `readWrite`.
    pub read_write: ReadWrite,
    /// `resourceOperations`.
    pub resource_operations: Vec<ResourceOperation>,
}

/// A device profile.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProfile {
    /// `name`.
    pub name: String,
    /// `manufacturer`.
    pub manufacturer: Option<String>,
    /// `model`.
    pub model: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `labels`.
    pub labels: Vec<String>,
    /// `deviceResources`.
    pub device_resources: Vec<DeviceResource>,
    /// `deviceCommands`.
    pub device_commands: Vec<DeviceCommand>,
}

impl DeviceProfile {
    /// Parses and checks a profile file.
    pub fn parse(text: &str) -> Result<DeviceProfile, Error> {
        DeviceProfile::from_node(&yaml::parse(text)?)
    }

    /// Reads a profile from a parsed document.
    pub fn from_node(doc: &Node) -> Result<DeviceProfile, Error> {
        map(doc, "a device profile")?;
        let name = required(doc, "name", "the profile")?;
        let mut resources: Vec<DeviceResource> = Vec::new();
        for node in seq(doc, "deviceResources")? {
            let resource = resource(node)?;
            if resources.iter().any(|r| r.name == resource.name) {
                return fail(
                    node,
                    format!("device resource `{}` defined twice", resource.name),
                );
            }
            resources.push(resource);
        }
        let mut commands: Vec<DeviceCommand> = Vec::new();
        for node in seq(doc, "deviceCommands")? {
            let command = command(node, &resources)?;
            if resources.iter().any(|r| r.name == command.name)
                || commands.iter().any(|c| c.name == command.name)
            {
                return fail(
                    node,
                    format!("command name `{}` is already used", command.name),
                );
            }
            commands.push(command);
        }
        Ok(DeviceProfile {
            name,
            manufacturer: text(doc, "manufacturer")?,
            model: text(doc, "model")?,
            description: text(doc, "description")?,
            labels: strings(doc, "labels")?,
            device_resources: resources,
            device_commands: commands,
        })
    }

    /// The resource named `name`.
    pub fn resource(&self, name: &str) -> Option<&DeviceResource> {
        self.device_resources.iter().find(|r| r.name == name)
    }

    /// The command named `name`.
    pub fn command(&self, name: &str) -> Option<&DeviceCommand> {
        self.device_commands.iter().find(|c| c.name == name)
    }

    /// The resources a command or resource name stands for (EdgeX lets a client address a
    /// resource directly as a command), or `None` if neither exists.
    pub fn resources_of(&self, name: &str) -> Option<Vec<&DeviceResource>> {
        if let Some(command) = self.command(name) {
            return command
                .resource_operations
                .iter()
                .map(|op| self.resource(&op.device_resource))
                .collect();
        }
        self.resource(name).map(|r| alloc::vec![r])
    }
}

fn resource(node: &Node) -> Result<DeviceResource, Error> {
    map(node, "a device resource")?;
    let name = required(node, "name", "a device resource")?;
    let Some(props) = node.get("properties") else {
        return fail(
            node,
            format!("device resource `{name}` has no `properties`"),
        );
    };
    map(props, "`properties`")?;
    let type_name = required(props, "valueType", "`properties`")?;
    let Some(value_type) = ValueType::from_name(&type_name) else {
        let at = props.get("valueType").unwrap_or(props);
        return fail(
            at,
            format!("`valueType`: `{type_name}` is not an EdgeX value type"),
        );
    };
    let access = required(props, "readWrite", "`properties`")?;
    let Some(read_write) = ReadWrite::parse(&access) else {
        let at = props.get("readWrite").unwrap_or(props);
        return fail(at, format!("`readWrite`: `{access}` is not R, W or RW"));
    };
    let scale: Option<f64> = parsed(props, "scale")?;
    if scale == Some(0.0) {
        return fail(props.get("scale").unwrap_or(props), "`scale` must not be 0");
    }
    let properties = ResourceProperties {
        value_type,
        read_write,
        units: text(props, "units")?,
        minimum: parsed(props, "minimum")?,
        maximum: parsed(props, "maximum")?,
        default_value: text(props, "defaultValue")?,
        mask: uint(props, "mask")?,
        shift: parsed(props, "shift")?,
        scale,
        offset: parsed(props, "offset")?,
        base: parsed(props, "base")?,
        media_type: text(props, "mediaType")?,
    };
    let attributes = match node.get("attributes") {
        None => Vec::new(),
        Some(n) if n.is_null() => Vec::new(),
        Some(n) => map(n, "`attributes`")?.to_vec(),
    };
    Ok(DeviceResource {
        name,
        description: text(node, "description")?,
        is_hidden: boolean(node, "isHidden")?.unwrap_or(false),
        properties,
        attributes,
    })
}

fn command(node: &Node, resources: &[DeviceResource]) -> Result<DeviceCommand, Error> {
    map(node, "a device command")?;
    let name = required(node, "name", "a device command")?;
    let access = required(node, "readWrite", "a device command")?;
    let Some(read_write) = ReadWrite::parse(&access) else {
        let at = node.get("readWrite").unwrap_or(node);
        return fail(at, format!("`readWrite`: `{access}` is not R, W or RW"));
    };
    let mut operations = Vec::new();
    for op in seq(node, "resourceOperations")? {
        map(op, "a resource operation")?;
        let device_resource = required(op, "deviceResource", "a resource operation")?;
        if !resources.iter().any(|r| r.name == device_resource) {
            return fail(
                op,
                format!("command `{name}` names an unknown resource `{device_resource}`"),
            );
        }
        operations.push(ResourceOperation {
            device_resource,
            default_value: text(op, "defaultValue")?,
        });
    }
    if operations.is_empty() {
        return fail(
            node,
            format!("command `{name}` has no `resourceOperations`"),
        );
    }
    Ok(DeviceCommand {
        name,
        is_hidden: boolean(node, "isHidden")?.unwrap_or(false),
        read_write,
        resource_operations: operations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const THERMOSTAT: &str = include_str!("../profiles/modbus-thermostat.yaml");

    #[test]
    fn committed_profile_loads() {
        let p = DeviceProfile::parse(THERMOSTAT).unwrap();
        assert_eq!(p.name, "Modbus-Thermostat");
        let t = p.resource("Temperature").unwrap();
        assert_eq!(t.properties.value_type, ValueType::Float32);
        assert_eq!(t.properties.scale, Some(0.1));
        assert_eq!(t.attribute("primaryTable"), Some("HOLDING_REGISTERS"));
        assert_eq!(t.attribute("rawType"), Some("INT16"));
        let sw = p.resource("Switch").unwrap();
        assert_eq!(sw.properties.read_write, ReadWrite::ReadWrite);
        assert_eq!(p.resources_of("Readings").unwrap().len(), 3);
        assert_eq!(p.resources_of("Switch").unwrap().len(), 1);
        assert!(p.resources_of("Nope").is_none());
    }

    #[test]
    fn every_committed_profile_loads() {
        for text in [
            THERMOSTAT,
            include_str!("../profiles/modbus-swap.yaml"),
            include_str!("../profiles/mqtt-sensor.yaml"),
        ] {
            DeviceProfile::parse(text).unwrap();
        }
    }

    #[test]
    fn dash_alone_layout_and_quoted_numbers_load() {
        // The layout many EdgeX example profiles use: a lone dash, the item's mapping indented
        // below it, flow attributes on their own line, numbers written as strings.
        let text = "name: \"Layout\"\ndeviceResources:\n-\n  name: \"SwitchA\"\n  isHidden: false\n  description: \"On/Off , 0-OFF 1-ON\"\n  attributes:\n    { primaryTable: \"COILS\", startingAddress: 0 }\n  properties:\n    valueType: \"Bool\"\n    readWrite: \"RW\"\n-\n  name: \"Level\"\n  attributes:\n    { primaryTable: \"HOLDING_REGISTERS\", startingAddress: 3, rawType: \"Int16\" }\n  properties:\n    valueType: \"Float64\"\n    readWrite: \"R\"\n    scale: \"0.01\"\n    minimum: \"-10\"\n    mask: \"0xFF\"\ndeviceCommands:\n-\n  name: \"Switch\"\n  readWrite: \"RW\"\n  isHidden: false\n  resourceOperations:\n  - { deviceResource: \"SwitchA\", defaultValue: \"false\" }\n";
        let p = DeviceProfile::parse(text).unwrap();
        assert_eq!(p.device_resources.len(), 2);
        let level = p.resource("Level").unwrap();
        assert_eq!(level.properties.scale, Some(0.01));
        assert_eq!(level.properties.minimum, Some(-10.0));
        assert_eq!(level.properties.mask, Some(0xff));
        assert_eq!(level.attribute("rawType"), Some("Int16"));
        assert_eq!(
            p.command("Switch").unwrap().resource_operations[0]
                .default_value
                .as_deref(),
            Some("false")
        );
    }

    #[test]
    fn schema_errors_name_the_line() {
        let base = "name: P\ndeviceResources:\n  - name: A\n    properties:\n      valueType: Int16\n      readWrite: R\n";
        let cases: &[(String, usize, &str)] = &[
            (base.replace("Int16", "Int17"), 5, "not an EdgeX value type"),
            (base.replace("readWrite: R", "readWrite: X"), 6, "not R, W or RW"),
            (base.replace("name: P\n", ""), 1, "no `name`"),
            (
                alloc::format!("{base}      scale: zero\n"),
                7,
                "not a valid value",
            ),
            (alloc::format!("{base}      scale: 0\n"), 7, "must not be 0"),
            (
                alloc::format!("{base}  - name: A\n    properties: {{valueType: Bool, readWrite: R}}\n"),
                7,
                "defined twice",
            ),
            (
                alloc::format!("{base}deviceCommands:\n  - name: C\n    readWrite: R\n    resourceOperations:\n      - {{ deviceResource: B }}\n"),
                11,
                "unknown resource `B`",
            ),
            (
                alloc::format!("{base}deviceCommands:\n  - name: A\n    readWrite: R\n    resourceOperations: [{{deviceResource: A}}]\n"),
                8,
                "already used",
            ),
            (base.replace("    properties:\n", "    properties: 3\n").replace("      valueType: Int16\n      readWrite: R\n", ""), 4, "mapping"),
        ];
        for (text, line, what) in cases {
            let e = DeviceProfile::parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text}\n{e}");
            assert!(e.message.contains(what), "{text}\n{e}");
        }
    }
}
