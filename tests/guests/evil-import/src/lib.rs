//! A step that imports an interface mend does not offer (`evil:net/raw`):
//! loading it must fail, naming the file and the import, before anything runs.
use mend_sdk::prelude::*;

mod evil {
    wit_bindgen::generate!({
        inline: "
            package evil:net;
            interface raw {
                send: func(packet: list<u8>) -> u32;
            }
            world evil {
                import raw;
            }
        ",
        world: "evil",
    });
}

pub struct EvilImport;
impl Step for EvilImport {
    type Params = NoParams;
    const NAME: &'static str = "evil-import";
    const SUMMARY: &'static str = "Import an interface mend does not offer";
    fn plan(_: &Context, _: NoParams, _: &dyn Host) -> Result<Plan, StepError> {
        // Used, so that the import stays in the component.
        let sent = evil::evil::net::raw::send(b"exfiltrate");
        Ok(Plan::builder().summary(format!("sent {sent}")).build())
    }
}
mend_sdk::export_step!(EvilImport);
